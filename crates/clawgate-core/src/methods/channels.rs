//! `channels.status`, `channels.start|stop|logout`, `send`, and the channel pairing methods
//! (`channels.pairing.*`).

use std::time::Duration;

use serde_json::{Value, json};

use clawgate_channels::{AccountKey, MediaSource, OutboundMedia, OutboundMessage, chunk_text};
use clawgate_protocol::methods::channels::{
    ChannelAccountParams, ChannelAccountState, ChannelHold, ChannelPairingRequest, ChannelsControlResult,
    ChannelsLogoutParams, ChannelsPairingApproveParams, ChannelsPairingApproveResult, ChannelsPairingDismissParams,
    ChannelsPairingDismissResult, ChannelsPairingListParams, ChannelsPairingListResult, ChannelsStartParams,
    ChannelsStatusParams, ChannelsStatusResult, ChannelsStopParams, CommandOwnerBootstrap, PairingAccount,
    PairingLimits, PairingNotification, PairingRequestMetadata, SendParams, SendResult, SendStatus,
};
use clawgate_store::{ChannelPairingStatus, ChannelStore, OutboxStatus};

use crate::channels::{AccountControl, ChannelService, Hold};
use crate::error::CoreError;
use crate::gateway::Store;
use crate::time::now_ms;

/// `channels.status {probe?, timeoutMs?, channel?}` → per account: configured, running,
/// connected, last inbound/outbound/transport activity, last error, outbox counts.
pub async fn channels_status(
    channels: &ChannelService,
    params: ChannelsStatusParams,
) -> Result<ChannelsStatusResult, CoreError> {
    let out = channels.status().await;
    let Value::Object(mut out) = out else { return Err(CoreError::internal("the channel snapshot is not an object")) };
    if let Some(only) = params.channel {
        for key in ["channelAccounts", "channels", "channelLabels", "channelDefaultAccountId"] {
            if let Some(m) = out.get_mut(key).and_then(Value::as_object_mut) {
                m.retain(|k, _| *k == only);
            }
        }
        if let Some(order) = out.get_mut("channelOrder").and_then(Value::as_array_mut) {
            order.retain(|c| *c == only);
        }
    }
    Ok(ChannelsStatusResult(out))
}

/// What a control call did, as the wire shows it.
#[derive(Clone, Copy)]
enum Control {
    Start,
    Stop,
    Logout,
}

fn control_result(
    params: &ChannelAccountParams,
    account: Option<&str>,
    op: Control,
    states: Vec<AccountControl>,
) -> ChannelsControlResult {
    let all_running = states.iter().all(|s| s.running);
    let none_running = states.iter().all(|s| !s.running);
    let cleared = states.iter().any(|s| s.cleared);
    ChannelsControlResult {
        channel: params.channel.trim().to_owned(),
        account_id: account.map(str::to_owned),
        running: all_running,
        started: matches!(op, Control::Start).then_some(all_running),
        stopped: matches!(op, Control::Stop | Control::Logout).then_some(none_running),
        cleared: matches!(op, Control::Logout).then_some(cleared),
        accounts: states
            .into_iter()
            .map(|s| ChannelAccountState {
                account_id: s.key.account,
                running: s.running,
                held: s.hold.map(|h| match h {
                    Hold::Stopped => ChannelHold::Stopped,
                    Hold::LoggedOut => ChannelHold::LoggedOut,
                }),
                last_start_at: s.last_start_at,
                last_stop_at: s.last_stop_at,
            })
            .collect(),
    }
}

/// `channels.start {channel, accountId?}` → [`ChannelsControlResult`]: starts the account (every
/// account of the channel without `accountId`) if it is not running, lifting a stop or logout;
/// already running is `ok` with `running: true`. Inbound messages that waited are then routed
/// and queued replies sent.
pub async fn channels_start(
    channels: &ChannelService,
    params: ChannelsStartParams,
) -> Result<ChannelsControlResult, CoreError> {
    let account = trimmed(&params.account_id);
    let states = channels.start_accounts(params.channel.trim(), account).await?;
    Ok(control_result(&params, account, Control::Start, states))
}

/// `channels.stop {channel, accountId?}` → [`ChannelsControlResult`]: stops the account (every
/// account of the channel without `accountId`) and keeps it stopped through config reloads until
/// `channels.start` or the gateway's next start (a stop is not persisted; a logout is). The
/// others keep running; its queued replies stay in the outbox and go out after a start.
pub async fn channels_stop(
    channels: &ChannelService,
    params: ChannelsStopParams,
) -> Result<ChannelsControlResult, CoreError> {
    let account = trimmed(&params.account_id);
    let states = channels.stop_accounts(params.channel.trim(), account).await?;
    Ok(control_result(&params, account, Control::Stop, states))
}

/// `channels.logout {channel, accountId?}` → [`ChannelsControlResult`]: stops the account, keeps
/// it stopped across config reloads *and restarts* until `channels.start`, and forgets the
/// session the gateway kept for it: the adapter's stored state (Telegram's update offset) and
/// its in-memory session (Discord's resume state, Slack's socket URL). Tokens stay in the config
/// — the gateway never rewrites secrets — as do approved pairings and the outbox.
pub async fn channels_logout(
    channels: &ChannelService,
    params: ChannelsLogoutParams,
) -> Result<ChannelsControlResult, CoreError> {
    let account = trimmed(&params.account_id);
    let states = channels.logout_accounts(params.channel.trim(), account).await?;
    Ok(control_result(&params, account, Control::Logout, states))
}

/// A string param, trimmed; blank reads as absent.
fn trimmed(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `send {to, message?, mediaUrl?, channel?, accountId?, threadId?, replyToId?, silent?,
/// forceDocument?, idempotencyKey}` → `{runId, messageId, channel, chatId, status}`.
///
/// The message goes through the durable outbox (so a repeated idempotency key sends nothing
/// twice, and a restart does not lose it); the call waits up to `timeoutMs` (default 10 s) for
/// the platform to accept it and answers `status: "queued"` if it has not yet.
pub async fn send(channels: &ChannelService, params: SendParams) -> Result<SendResult, CoreError> {
    let Some(idem) = trimmed(&params.idempotency_key) else {
        return Err(CoreError::invalid("invalid send params: must have required property 'idempotencyKey'"));
    };
    let Some(to) = trimmed(&params.to) else {
        return Err(CoreError::invalid("invalid send params: must have required property 'to'"));
    };
    let running = channels.accounts();
    let (channel, chat_id) = match (trimmed(&params.channel), to.split_once(':')) {
        (Some(c), _) => (c.to_owned(), to.to_owned()),
        (None, Some((prefix, rest))) if running.iter().any(|r| r.cfg.key.channel == prefix) => {
            (prefix.to_owned(), rest.to_owned())
        }
        (None, _) => {
            let mut names: Vec<&str> = running.iter().map(|r| r.cfg.key.channel.as_str()).collect();
            names.dedup();
            match names.as_slice() {
                [only] => ((*only).to_owned(), to.to_owned()),
                [] => {
                    return Err(CoreError::Unavailable(
                        "no chat channel is running; configure one under channels.*".into(),
                    ));
                }
                _ => {
                    return Err(CoreError::invalid(format!(
                        "several channels are running ({}); say which with \"channel\"",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let account = trimmed(&params.account_id).unwrap_or("default").to_owned();
    let key = AccountKey::new(&channel, &account);
    let Some(rt) = channels.account(&key) else {
        return Err(CoreError::invalid(format!("channel account {key} is not configured or not running")));
    };
    let text = params.message.as_deref().unwrap_or_default();
    let thread_id = params.thread_id.clone().filter(|t| !t.is_empty());
    let media_urls: Vec<String> = trimmed(&params.media_url)
        .map(|u| vec![u.to_owned()])
        .or_else(|| params.media_urls.clone())
        .unwrap_or_default();
    if text.trim().is_empty() && media_urls.is_empty() {
        return Err(CoreError::invalid("invalid send params: give \"message\" text or a \"mediaUrl\""));
    }
    let caps = rt.channel.capabilities();
    let mut messages: Vec<OutboundMessage> = Vec::new();
    for url in &media_urls {
        let filename = url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("file").to_owned();
        let mut m = OutboundMessage::text(&chat_id, thread_id.clone(), "");
        m.media = Some(OutboundMedia {
            content_type: params.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned()),
            filename,
            source: MediaSource::Url { url: url.clone() },
            size: None,
            force_document: params.force_document.unwrap_or(false),
        });
        messages.push(m);
    }
    for chunk in chunk_text(text, caps.max_text, caps.measure) {
        messages.push(OutboundMessage::text(&chat_id, thread_id.clone(), chunk));
    }
    let silent = params.silent.unwrap_or(false);
    for (i, m) in messages.iter_mut().enumerate() {
        m.silent = silent;
        if i == 0 {
            m.reply_to = trimmed(&params.reply_to_id).map(str::to_owned);
        }
    }
    let keys = channels.outbox().send(&key, idem, messages).await.map_err(|e| CoreError::Unavailable(e.to_string()))?;
    let timeout = Duration::from_millis(params.timeout_ms.unwrap_or(10_000).min(120_000));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut rows = Vec::new();
        for k in &keys {
            if let Ok(Some(r)) = channels.store().outbound_by_key(k).await {
                rows.push(r);
            }
        }
        if let Some(failed) = rows.iter().find(|r| r.status == OutboxStatus::Failed) {
            return Err(CoreError::Unavailable(format!(
                "{key} refused the message: {}",
                failed.last_error.as_deref().unwrap_or("unknown error")
            )));
        }
        let all_sent = rows.len() == keys.len() && rows.iter().all(|r| r.status == OutboxStatus::Sent);
        if all_sent || tokio::time::Instant::now() >= deadline {
            return Ok(SendResult {
                run_id: idem.to_owned(),
                channel,
                chat_id,
                status: if all_sent { SendStatus::Sent } else { SendStatus::Queued },
                message_id: rows.last().and_then(|r| r.platform_message_id.clone()),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

use crate::channels::{PAIRING_TTL_MS, label_of};

fn pairing_request(p: &clawgate_store::ChannelPairing) -> ChannelPairingRequest {
    ChannelPairingRequest {
        request_id: p.code.clone(),
        channel: p.channel.clone(),
        channel_label: label_of(&p.channel).to_owned(),
        account_id: p.account.clone(),
        sender_id: p.sender_id.clone(),
        sender_label: p.sender_name.clone().unwrap_or_else(|| p.sender_id.clone()),
        metadata: PairingRequestMetadata { chat_id: p.chat_id.clone() },
        created_at: crate::time::rfc3339(p.created_at_ms),
        last_seen_at: crate::time::rfc3339(p.created_at_ms),
        expires_at: crate::time::rfc3339(p.expires_at_ms),
        notify_supported: true,
    }
}

/// `channels.pairing.list {channel?, accountId?}` → `{accounts, requests, commandOwnerConfigured,
/// limits}`: the pending requests of senders who got a pairing code (`requestId` is the code).
pub async fn pairing_list(
    channels: &ChannelService,
    params: ChannelsPairingListParams,
) -> Result<ChannelsPairingListResult, CoreError> {
    let channel = trimmed(&params.channel);
    let account = trimmed(&params.account_id);
    let wanted = |c: &str, a: &str| channel.is_none_or(|x| x == c) && account.is_none_or(|x| x == a);
    let list = channels.store().list_channel_pairings(Some(ChannelPairingStatus::Pending), now_ms()).await?;
    let accounts = channels
        .accounts()
        .iter()
        .filter(|rt| wanted(&rt.cfg.key.channel, &rt.cfg.key.account))
        .map(|rt| PairingAccount {
            channel: rt.cfg.key.channel.clone(),
            channel_label: label_of(&rt.cfg.key.channel).to_owned(),
            account_id: rt.cfg.key.account.clone(),
            notify_supported: true,
        })
        .collect();
    let requests = list.iter().filter(|p| wanted(&p.channel, &p.account)).map(pairing_request).collect();
    Ok(ChannelsPairingListResult {
        accounts,
        requests,
        command_owner_configured: false,
        limits: PairingLimits { pending_per_account: 1000, ttl_ms: PAIRING_TTL_MS },
    })
}

fn unknown_code(code: &str) -> CoreError {
    CoreError::InvalidRequest {
        message: format!(
            "no pending pairing request {code}; it may have expired (codes last one hour) — ask the sender to \
             write to the bot again for a new code"
        ),
        details: Some(json!({"code": "PAIRING_CODE_UNKNOWN"})),
    }
}

/// Resolve the pending request `request_id` of `channel`/`account_id` (each required, with
/// upstream's wording).
async fn resolve(
    store: &Store,
    method: &str,
    [channel, account_id, request_id]: [&Option<String>; 3],
    approve: bool,
) -> Result<clawgate_store::ChannelPairing, CoreError> {
    for (key, value) in [("channel", channel), ("accountId", account_id), ("requestId", request_id)] {
        if trimmed(value).is_none() {
            return Err(CoreError::invalid(format!("invalid {method} params: must have required property '{key}'")));
        }
    }
    let code = trimmed(request_id).unwrap_or_default();
    let channel = trimmed(channel);
    let account = trimmed(account_id).unwrap_or("default");
    // Codes are unique among pending requests; check the account before resolving.
    let pending = store.list_channel_pairings(Some(ChannelPairingStatus::Pending), now_ms()).await?;
    if !pending
        .iter()
        .any(|p| p.code.eq_ignore_ascii_case(code) && p.account == account && channel == Some(p.channel.as_str()))
    {
        return Err(unknown_code(code));
    }
    let Some(p) = store.resolve_channel_pairing(code, channel, approve, now_ms()).await? else {
        return Err(unknown_code(code));
    };
    tracing::info!(channel = %p.channel, account = %p.account, sender = %p.sender_id, approve, "channel pairing resolved");
    Ok(p)
}

/// `channels.pairing.approve {channel, accountId, requestId, notify?}` → `{requestId, senderId,
/// notification, commandOwnerBootstrap}`; with `notify`, the sender is told through the channel.
pub async fn pairing_approve(
    channels: &ChannelService,
    params: ChannelsPairingApproveParams,
) -> Result<ChannelsPairingApproveResult, CoreError> {
    let fields = [&params.channel, &params.account_id, &params.request_id];
    let p = resolve(channels.store(), "channels.pairing.approve", fields, true).await?;
    let notification = if params.notify == Some(true) {
        let key = AccountKey::new(&p.channel, &p.account);
        let msg = OutboundMessage::text(&p.chat_id, None, "You're approved — send your message again and I'll answer.");
        match channels.outbox().send(&key, &format!("pairing:{}", p.code), vec![msg]).await {
            Ok(_) => PairingNotification::Sent,
            Err(_) => PairingNotification::Failed,
        }
    } else {
        PairingNotification::NotRequested
    };
    Ok(ChannelsPairingApproveResult {
        request_id: p.code,
        sender_id: p.sender_id,
        notification,
        command_owner_bootstrap: CommandOwnerBootstrap::NotRequested,
    })
}

/// `channels.pairing.dismiss {channel, accountId, requestId}` → `{requestId, senderId}`.
pub async fn pairing_dismiss(
    channels: &ChannelService,
    params: ChannelsPairingDismissParams,
) -> Result<ChannelsPairingDismissResult, CoreError> {
    let fields = [&params.channel, &params.account_id, &params.request_id];
    let p = resolve(channels.store(), "channels.pairing.dismiss", fields, false).await?;
    Ok(ChannelsPairingDismissResult { request_id: p.code, sender_id: p.sender_id })
}
