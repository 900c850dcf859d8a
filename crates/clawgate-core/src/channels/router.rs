//! Routing one inbox row: gate, command or agent run, and the reply into the outbox.
//!
//! A row moves `received → routed → answered` (or `dropped`), each step written before the
//! next starts, and routing is idempotent at every step: the run id is derived from the row
//! id, so resubmitting after a crash finds the same run; the reply's outbox keys are derived
//! from the row id, so queueing twice inserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use clawgate_channels::fault::crash_point;
use clawgate_channels::{ChatKind, InboundMessage, OutboundMessage, Verdict, chunk_text, gate};
use clawgate_store::{ChannelPairingStatus, ChannelStore, InboxRecord, InboxStatus, NewOutbound, RunKind};

use super::ingress::inbound_of;
use super::{AccountRuntime, ChannelService};
use crate::agent::{AbortReason, RunOutcome, RunRequest, Submitted, TurnContext};
use crate::gateway::Store;
use crate::time::now_ms;

/// How long a pairing code stays valid.
pub(crate) const PAIRING_TTL_MS: i64 = 60 * 60 * 1000;

impl ChannelService {
    /// Route a row on its own task (unless another task already routes it).
    pub(crate) fn spawn_route(&self, rec: InboxRecord) {
        if !self.claim(rec.id) {
            return;
        }
        let channels = self.clone();
        self.inner.tasks.spawn("channels", async move {
            let id = rec.id;
            if let Err(e) = channels.route(rec).await {
                tracing::error!(inbox = id, error = %e, "routing an inbound message failed; it is retried at the next start");
            }
            channels.release(id);
        });
    }
}

/// The session a chat's messages go to, shaped like upstream's keys:
/// `agent:<agent>:<channel>:direct:<sender>` for DMs, `agent:<agent>:<channel>:group:<chat>`
/// for groups (`:topic:<thread>` for forum topics and threads). A non-default account is
/// part of the key so two bots never share a conversation.
pub fn session_key_for(agent_id: &str, msg: &InboundMessage) -> String {
    let channel =
        if msg.account == "default" { msg.channel.clone() } else { format!("{}:{}", msg.channel, msg.account) };
    match msg.chat_kind {
        ChatKind::Direct => format!("agent:{agent_id}:{channel}:direct:{}", msg.sender_id),
        ChatKind::Group | ChatKind::Channel => match &msg.thread_id {
            Some(t) => format!("agent:{agent_id}:{channel}:group:{}:topic:{t}", msg.chat_id),
            None => format!("agent:{agent_id}:{channel}:group:{}", msg.chat_id),
        },
    }
}

/// The session of an inbound message: the one its sender chose (the webhook channel's
/// `sessionKey`, under the account's agent when bare), else the chat's own
/// ([`session_key_for`]).
fn chosen_session_key(agent_id: &str, msg: &InboundMessage) -> String {
    let Some(raw) = msg.session_key.as_deref() else { return session_key_for(agent_id, msg) };
    match crate::session_key::SessionKey::parse(raw, agent_id) {
        Ok(key) if !key.is_reserved() => key.to_string(),
        _ => {
            tracing::warn!(channel = %msg.channel, account = %msg.account, "inbound sessionKey refused; using the chat's session");
            session_key_for(agent_id, msg)
        }
    }
}

fn run_id_for(id: i64, attempt: u32) -> String {
    if attempt == 0 { format!("inbound-{id}") } else { format!("inbound-{id}-r{attempt}") }
}

async fn set_status(
    store: &Store,
    id: i64,
    status: InboxStatus,
    reason: Option<&str>,
    run_id: Option<&str>,
    session_key: Option<&str>,
) -> Result<(), String> {
    store.set_inbound_status(id, status, reason, run_id, session_key, now_ms()).await.map_err(|e| e.to_string())
}

impl ChannelService {
    async fn route(&self, rec: InboxRecord) -> Result<(), String> {
        let Some(msg) = inbound_of(&rec) else {
            return set_status(&self.inner.store, rec.id, InboxStatus::Dropped, Some("unreadable"), None, None).await;
        };
        let key = msg.account_key();
        let Some(rt) = self.account(&key) else {
            if self.is_held(&key) {
                // Stopped by an operator: the row waits in the inbox; `channels.start` routes it.
                tracing::info!(account = %key, inbox = rec.id, "inbound message waits: its account is stopped");
                return Ok(());
            }
            if self.is_following(&key) {
                // Another gateway holds the account's lease and routes its inbox; should that
                // gateway die, this one routes the row when it takes the lease over.
                tracing::debug!(account = %key, inbox = rec.id, "inbound message left to the gateway driving its account");
                return Ok(());
            }
            // The account is gone from the config: nothing can answer.
            tracing::warn!(account = %key, inbox = rec.id, "inbound message for an account that is not running; dropped");
            return set_status(
                &self.inner.store,
                rec.id,
                InboxStatus::Dropped,
                Some("account not running"),
                None,
                None,
            )
            .await;
        };
        match rec.status {
            InboxStatus::Received => self.admit(&rt, &rec, &msg).await,
            InboxStatus::Routed => match rec.run_id.clone() {
                Some(run_id) => self.follow_run(&rt, &rec, &msg, run_id).await,
                None => self.admit(&rt, &rec, &msg).await,
            },
            InboxStatus::Answered | InboxStatus::Dropped => Ok(()),
        }
    }

    /// Gate the message, then answer a command or start the agent run.
    async fn admit(&self, rt: &Arc<AccountRuntime>, rec: &InboxRecord, msg: &InboundMessage) -> Result<(), String> {
        let paired = if msg.chat_kind == ChatKind::Direct {
            self.inner.store.is_channel_sender_paired(&msg.channel, &msg.account, &msg.sender_id).await.unwrap_or(false)
        } else {
            false
        };
        match gate(&rt.cfg, msg, paired) {
            Verdict::Drop(reason) => {
                tracing::info!(account = %rt.cfg.key, sender = %msg.sender_id, chat = %msg.chat_id, reason,
                           "inbound message not acted on");
                return set_status(&self.inner.store, rec.id, InboxStatus::Dropped, Some(reason), None, None).await;
            }
            Verdict::Pair => return self.pairing_reply(rt, rec, msg).await,
            Verdict::Allow => {}
        }
        let limits = rt.cfg.rate_limits;
        let allowed = {
            let mut l = rt.limiter.lock();
            let now = Instant::now();
            l.allow(format!("s:{}", msg.sender_id), limits.per_sender_per_minute, now)
                && l.allow(format!("c:{}", msg.chat_id), limits.per_chat_per_minute, now)
        };
        if !allowed {
            tracing::warn!(account = %rt.cfg.key, sender = %msg.sender_id, chat = %msg.chat_id, "inbound rate limit hit");
            return set_status(&self.inner.store, rec.id, InboxStatus::Dropped, Some("rate limited"), None, None).await;
        }
        let agent_id = rt.cfg.settings.agent.clone().unwrap_or_else(|| self.inner.agents.agents().default_id.clone());
        let session_key = chosen_session_key(&agent_id, msg);
        let caller = super::commands::CommandCaller::from_channel(&rt.cfg, msg, &session_key, &agent_id);
        if let Some(reply) = self.inner.commands.handle(&caller, &msg.text).await {
            return self.queue_reply(rt, rec, msg, &reply).await;
        }
        let run_id = run_id_for(rec.id, 0);
        self.submit(msg, &run_id, &session_key, &agent_id).await?;
        // A store write per message only for agents that run a heartbeat (the only reader).
        if self.inner.agents.agents().get(&agent_id).is_some_and(|a| a.heartbeat.is_some()) {
            crate::heartbeat_runner::remember_route(&self.inner.store, &agent_id, msg).await;
        }
        set_status(&self.inner.store, rec.id, InboxStatus::Routed, None, Some(&run_id), Some(&session_key)).await?;
        self.follow_run(rt, rec, msg, run_id).await
    }

    async fn submit(
        &self,
        msg: &InboundMessage,
        run_id: &str,
        session_key: &str,
        agent_id: &str,
    ) -> Result<(), String> {
        let who =
            msg.sender_name.clone().or_else(|| msg.sender_username.clone()).unwrap_or_else(|| msg.sender_id.clone());
        let extra = match msg.chat_kind {
            ChatKind::Direct => format!("You are chatting with {who} on {}.", msg.channel),
            _ => format!(
                "This is a group chat on {}{}; the current message is from {who}.",
                msg.channel,
                msg.chat_title.as_deref().map(|t| format!(" (\"{t}\")")).unwrap_or_default()
            ),
        };
        let req = RunRequest {
            run_id: run_id.to_owned(),
            session_key: session_key.to_owned(),
            agent_id: agent_id.to_owned(),
            message: msg.text.clone(),
            kind: RunKind::Chat,
            timeout: None,
            extra_system: Some(extra),
            client: Some(json!({"id": msg.channel, "mode": "channel", "account": msg.account, "chatId": msg.chat_id,
                            "threadId": msg.thread_id, "senderId": msg.sender_id})),
            context: self.turn_context(msg),
        };
        match self.inner.agents.submit(req).await {
            Ok(Submitted::Started | Submitted::InFlight | Submitted::Done(_)) => Ok(()),
            Err(e) => Err(format!("cannot start the agent run: {e}")),
        }
    }

    /// The context a sender attached (the webhook channel's `context`), captured like the WS
    /// API's: capped by `agents.defaults.contextMaxChars`, read by the model as untrusted data.
    /// A gateway with context turned off runs the message without it.
    fn turn_context(&self, msg: &InboundMessage) -> Option<TurnContext> {
        let Some(Value::Object(map)) = msg.context.clone() else { return None };
        match TurnContext::capture(map, self.inner.agents.agents().context_max_chars) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(channel = %msg.channel, account = %msg.account, error = %e, "inbound context left out");
                None
            }
        }
    }

    /// Wait for the run, showing "typing…" meanwhile, then queue its reply.
    async fn follow_run(
        &self,
        rt: &Arc<AccountRuntime>,
        rec: &InboxRecord,
        msg: &InboundMessage,
        mut run_id: String,
    ) -> Result<(), String> {
        let caps = rt.channel.capabilities();
        let mut attempt = run_id.rsplit_once("-r").and_then(|(_, n)| n.parse::<u32>().ok()).unwrap_or(0);
        loop {
            let outcome = loop {
                if caps.typing {
                    let ch = rt.channel.clone();
                    let (chat, thread) = (msg.chat_id.clone(), msg.thread_id.clone());
                    self.inner.tasks.spawn("channels", async move {
                        if let Err(e) = ch.typing(&chat, thread.as_deref()).await {
                            tracing::debug!(error = %e, "typing indicator failed (harmless)");
                        }
                    });
                }
                let wait = if caps.typing { caps.typing_interval } else { Duration::from_secs(30) };
                match self.inner.agents.wait(&run_id, wait).await {
                    Ok(Some(o)) if o.is_terminal() => break Some(o),
                    Ok(Some(_)) => {}
                    Ok(None) => break None,
                    Err(e) => return Err(e.to_string()),
                }
                if self.inner.tasks.is_stopping() {
                    return Ok(());
                }
            };
            let text = match outcome {
                Some(RunOutcome::Completed(c)) => {
                    let t = c.text.trim().to_owned();
                    if t.is_empty() { "(the assistant gave an empty reply)".to_owned() } else { t }
                }
                Some(RunOutcome::Aborted(a)) => {
                    let partial = a.text.trim().to_owned();
                    if a.reason == AbortReason::Timeout {
                        format!("{partial}\n\n(The reply took too long and was cut off.)").trim().to_owned()
                    } else if partial.is_empty() {
                        // Stopped on purpose (/stop, chat.abort): nothing to say.
                        set_status(&self.inner.store, rec.id, InboxStatus::Answered, Some("aborted"), None, None)
                            .await?;
                        return Ok(());
                    } else {
                        partial
                    }
                }
                Some(RunOutcome::Interrupted | RunOutcome::Queued) => {
                    // The gateway died mid-turn: run it again once.
                    if attempt >= 1 {
                        "Sorry — the gateway restarted twice while answering this. Please send it again.".to_owned()
                    } else {
                        attempt += 1;
                        run_id = run_id_for(rec.id, attempt);
                        let agent_id =
                            rec.session_key.as_deref().and_then(|k| k.split(':').nth(1)).unwrap_or("main").to_owned();
                        let session_key = rec.session_key.clone().unwrap_or_else(|| session_key_for(&agent_id, msg));
                        self.submit(msg, &run_id, &session_key, &agent_id).await?;
                        set_status(
                            &self.inner.store,
                            rec.id,
                            InboxStatus::Routed,
                            Some("rerun after restart"),
                            Some(&run_id),
                            None,
                        )
                        .await?;
                        continue;
                    }
                }
                Some(o) => {
                    let err = match &o {
                        RunOutcome::Failed(f) if !f.error.is_empty() => f.error.as_str(),
                        _ => "unknown error",
                    };
                    format!("Sorry, I could not answer that: {err}")
                }
                None => {
                    // The run is unknown (pruned, or never stored): start it (again).
                    if attempt >= 2 {
                        return set_status(
                            &self.inner.store,
                            rec.id,
                            InboxStatus::Dropped,
                            Some("run lost"),
                            None,
                            None,
                        )
                        .await;
                    }
                    attempt += 1;
                    run_id = run_id_for(rec.id, attempt);
                    let agent_id = self.inner.agents.agents().default_id.clone();
                    let session_key = rec.session_key.clone().unwrap_or_else(|| session_key_for(&agent_id, msg));
                    self.submit(msg, &run_id, &session_key, &agent_id).await?;
                    set_status(&self.inner.store, rec.id, InboxStatus::Routed, None, Some(&run_id), Some(&session_key))
                        .await?;
                    continue;
                }
            };
            crash_point("run.finished");
            return self.queue_reply(rt, rec, msg, &text).await;
        }
    }

    /// Split `text` for the platform and queue it, marking the inbox row answered in the same
    /// transaction.
    pub(crate) async fn queue_reply(
        &self,
        rt: &Arc<AccountRuntime>,
        rec: &InboxRecord,
        msg: &InboundMessage,
        text: &str,
    ) -> Result<(), String> {
        let caps = rt.channel.capabilities();
        let names_message = rt.channel.replies_name_their_message();
        let chunks = chunk_text(text, caps.max_text, caps.measure);
        let items: Vec<NewOutbound> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut out = OutboundMessage::text(&msg.chat_id, msg.thread_id.clone(), chunk);
                if (i == 0 && msg.chat_kind != ChatKind::Direct) || names_message {
                    out.reply_to = Some(msg.message_id.clone());
                }
                out.chat_kind = Some(msg.chat_kind);
                out.to = Some(msg.sender_id.clone());
                NewOutbound {
                    idempotency_key: format!("reply:{}:{i}", rec.id),
                    channel: msg.channel.clone(),
                    account: msg.account.clone(),
                    chat_id: msg.chat_id.clone(),
                    payload: serde_json::to_value(&out).unwrap_or(Value::Null),
                }
            })
            .collect();
        self.inner.store.queue_outbound(&items, Some(rec.id), now_ms()).await.map_err(|e| e.to_string())?;
        // Before the wake-up: a crash here must find the reply queued and not yet sent.
        crash_point("outbox.queued");
        self.inner.outbox.wake(&rt.cfg.key);
        Ok(())
    }

    /// An unknown DM sender under `dmPolicy: "pairing"`: hand out a code once, run nothing.
    async fn pairing_reply(
        &self,
        rt: &Arc<AccountRuntime>,
        rec: &InboxRecord,
        msg: &InboundMessage,
    ) -> Result<(), String> {
        let now = now_ms();
        let name = msg.sender_username.as_deref().map(|u| format!("@{u}")).or_else(|| msg.sender_name.clone());
        let mut pairing = None;
        for _ in 0..5 {
            match self
                .inner
                .store
                .request_channel_pairing(
                    &msg.channel,
                    &msg.account,
                    &msg.sender_id,
                    name.as_deref(),
                    &msg.chat_id,
                    &new_code(),
                    now,
                    now + PAIRING_TTL_MS,
                )
                .await
            {
                Ok(p) => {
                    pairing = Some(p);
                    break;
                }
                Err(clawgate_store::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        let Some(p) = pairing else { return Err("could not allocate a pairing code".into()) };
        if p.status == ChannelPairingStatus::Approved {
            // Approved between the gate and here: treat as allowed next time; answer nothing now.
            return set_status(
                &self.inner.store,
                rec.id,
                InboxStatus::Dropped,
                Some("pairing approved meanwhile"),
                None,
                None,
            )
            .await;
        }
        if p.created_at_ms != now {
            tracing::info!(account = %rt.cfg.key, sender = %msg.sender_id, "unpaired sender wrote again; code already sent");
            return set_status(
                &self.inner.store,
                rec.id,
                InboxStatus::Dropped,
                Some("awaiting pairing approval"),
                None,
                None,
            )
            .await;
        }
        tracing::info!(account = %rt.cfg.key, sender = %msg.sender_id, code = %p.code, "pairing requested by an unknown sender");
        let text = format!(
            "Hi! This assistant only talks to people its owner has approved.\n\nYour pairing code: {code}\n\n\
         Ask the owner to run:\nclawgate pairing approve {channel} {code}\n(the code is valid for one hour)",
            code = p.code,
            channel = msg.channel
        );
        self.queue_reply(rt, rec, msg, &text).await
    }
}

fn new_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..8).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: ChatKind, thread: Option<&str>, account: &str) -> InboundMessage {
        InboundMessage {
            channel: "telegram".into(),
            account: account.into(),
            message_id: "1".into(),
            chat_id: "-100".into(),
            chat_kind: kind,
            chat_title: None,
            thread_id: thread.map(str::to_owned),
            space_id: None,
            sender_id: "42".into(),
            sender_username: None,
            sender_name: None,
            sender_is_bot: false,
            text: "x".into(),
            media: vec![],
            reply_to: None,
            reply_to_bot: false,
            mentions: vec![],
            mentions_bot: false,
            sent_at_ms: 0,
            session_key: None,
            context: None,
        }
    }

    #[test]
    fn session_keys_follow_upstreams_shape() {
        assert_eq!(session_key_for("main", &msg(ChatKind::Direct, None, "default")), "agent:main:telegram:direct:42");
        assert_eq!(session_key_for("main", &msg(ChatKind::Group, None, "default")), "agent:main:telegram:group:-100");
        assert_eq!(
            session_key_for("main", &msg(ChatKind::Group, Some("7"), "default")),
            "agent:main:telegram:group:-100:topic:7"
        );
        assert_eq!(session_key_for("ops", &msg(ChatKind::Direct, None, "work")), "agent:ops:telegram:work:direct:42");
    }

    #[test]
    fn pairing_codes_are_unambiguous() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 8);
            assert!(!c.contains(['0', 'O', '1', 'I']));
        }
    }
}
