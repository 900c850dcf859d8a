//! `channels.status`, `send`, and the channel pairing methods (`channels.pairing.*`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use clawgate_channels::{AccountKey, MediaSource, OutboundMedia, OutboundMessage, chunk_text};
use clawgate_store::{ChannelPairingStatus, ChannelStore, OutboxStatus};

use crate::error::CoreError;
use crate::gateway::Gateway;
use crate::time::now_ms;

/// `channels.status {probe?, timeoutMs?, channel?}` → per account: configured, running,
/// connected, last inbound/outbound/transport activity, last error, outbox counts.
pub async fn channels_status(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let mut out = crate::channels::status_payload(gw).await;
    if let Some(only) = params.get("channel").and_then(Value::as_str) {
        for key in ["channelAccounts", "channels", "channelLabels", "channelDefaultAccountId"] {
            if let Some(m) = out.get_mut(key).and_then(Value::as_object_mut) {
                m.retain(|k, _| k == only);
            }
        }
        if let Some(order) = out.get_mut("channelOrder").and_then(Value::as_array_mut) {
            order.retain(|c| c == only);
        }
    }
    Ok(out)
}

fn str_param<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// `send {to, message?, mediaUrl?, channel?, accountId?, threadId?, replyToId?, silent?,
/// forceDocument?, idempotencyKey}` → `{runId, messageId, channel, chatId, status}`.
///
/// The message goes through the durable outbox (so a repeated idempotency key sends nothing
/// twice, and a restart does not lose it); the call waits up to `timeoutMs` (default 10 s) for
/// the platform to accept it and answers `status: "queued"` if it has not yet.
pub async fn send(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let Some(idem) = str_param(&params, "idempotencyKey") else {
        return Err(CoreError::invalid("invalid send params: must have required property 'idempotencyKey'"));
    };
    let Some(to) = str_param(&params, "to") else {
        return Err(CoreError::invalid("invalid send params: must have required property 'to'"));
    };
    let running = gw.channels.accounts();
    let (channel, chat_id) = match (str_param(&params, "channel"), to.split_once(':')) {
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
    let account = str_param(&params, "accountId").unwrap_or("default").to_owned();
    let key = AccountKey::new(&channel, &account);
    let Some(rt) = gw.channels.account(&key) else {
        return Err(CoreError::invalid(format!("channel account {key} is not configured or not running")));
    };
    let text = params.get("message").and_then(Value::as_str).unwrap_or_default();
    let thread_id = params.get("threadId").and_then(|v| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let media_urls: Vec<String> = str_param(&params, "mediaUrl")
        .map(|u| vec![u.to_owned()])
        .or_else(|| {
            params
                .get("mediaUrls")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        })
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
            content_type: params
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            filename,
            source: MediaSource::Url { url: url.clone() },
            size: None,
            force_document: params.get("forceDocument").and_then(Value::as_bool).unwrap_or(false),
        });
        messages.push(m);
    }
    for chunk in chunk_text(text, caps.max_text, caps.measure) {
        messages.push(OutboundMessage::text(&chat_id, thread_id.clone(), chunk));
    }
    let silent = params.get("silent").and_then(Value::as_bool).unwrap_or(false);
    for (i, m) in messages.iter_mut().enumerate() {
        m.silent = silent;
        if i == 0 {
            m.reply_to = str_param(&params, "replyToId").map(str::to_owned);
        }
    }
    let keys = crate::channels::queue_send(gw, &key, idem, messages).await.map_err(CoreError::Unavailable)?;
    let timeout = Duration::from_millis(params.get("timeoutMs").and_then(Value::as_u64).unwrap_or(10_000).min(120_000));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut rows = Vec::new();
        for k in &keys {
            if let Ok(Some(r)) = gw.store.outbound_by_key(k).await {
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
            let message_id = rows.last().and_then(|r| r.platform_message_id.clone());
            let mut out = json!({
                "runId": idem,
                "channel": channel,
                "chatId": chat_id,
                "status": if all_sent { "sent" } else { "queued" },
            });
            if let Some(id) = message_id {
                out["messageId"] = json!(id);
            }
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

use crate::channels::{PAIRING_TTL_MS, label_of};

fn request_json(p: &clawgate_store::ChannelPairing) -> Value {
    let label = p.sender_name.clone().unwrap_or_else(|| p.sender_id.clone());
    json!({
        "requestId": p.code, "channel": p.channel, "channelLabel": label_of(&p.channel), "accountId": p.account,
        "senderId": p.sender_id, "senderLabel": label, "metadata": {"chatId": p.chat_id},
        "createdAt": crate::time::rfc3339(p.created_at_ms), "lastSeenAt": crate::time::rfc3339(p.created_at_ms),
        "expiresAt": crate::time::rfc3339(p.expires_at_ms), "notifySupported": true,
    })
}

/// `channels.pairing.list {channel?, accountId?}` → `{accounts, requests, commandOwnerConfigured,
/// limits}`: the pending requests of senders who got a pairing code (`requestId` is the code).
pub async fn pairing_list(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let channel = str_param(&params, "channel");
    let account = str_param(&params, "accountId");
    let wanted = |c: &str, a: &str| channel.is_none_or(|x| x == c) && account.is_none_or(|x| x == a);
    let list = gw.store.list_channel_pairings(Some(ChannelPairingStatus::Pending), now_ms()).await?;
    let accounts: Vec<Value> = gw
        .channels
        .accounts()
        .iter()
        .filter(|rt| wanted(&rt.cfg.key.channel, &rt.cfg.key.account))
        .map(|rt| {
            json!({"channel": rt.cfg.key.channel, "channelLabel": label_of(&rt.cfg.key.channel),
                   "accountId": rt.cfg.key.account, "notifySupported": true})
        })
        .collect();
    let requests: Vec<Value> = list.iter().filter(|p| wanted(&p.channel, &p.account)).map(request_json).collect();
    Ok(json!({
        "accounts": accounts,
        "requests": requests,
        "commandOwnerConfigured": false,
        "limits": {"pendingPerAccount": 1000, "ttlMs": PAIRING_TTL_MS},
    }))
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

/// `channels.pairing.approve {channel, accountId, requestId, notify?}` → `{requestId, senderId,
/// notification, commandOwnerBootstrap}`; with `notify`, the sender is told through the channel.
/// `channels.pairing.dismiss {channel, accountId, requestId}` → `{requestId, senderId}`.
pub async fn pairing_resolve(gw: &Arc<Gateway>, params: Value, approve: bool) -> Result<Value, CoreError> {
    let method = if approve { "channels.pairing.approve" } else { "channels.pairing.dismiss" };
    for key in ["channel", "accountId", "requestId"] {
        if str_param(&params, key).is_none() {
            return Err(CoreError::invalid(format!("invalid {method} params: must have required property '{key}'")));
        }
    }
    let code = str_param(&params, "requestId").unwrap_or_default();
    let channel = str_param(&params, "channel");
    let account = str_param(&params, "accountId").unwrap_or("default");
    // Codes are unique among pending requests; check the account before resolving.
    let pending = gw.store.list_channel_pairings(Some(ChannelPairingStatus::Pending), now_ms()).await?;
    if !pending
        .iter()
        .any(|p| p.code.eq_ignore_ascii_case(code) && p.account == account && channel == Some(p.channel.as_str()))
    {
        return Err(unknown_code(code));
    }
    let Some(p) = gw.store.resolve_channel_pairing(code, channel, approve, now_ms()).await? else {
        return Err(unknown_code(code));
    };
    tracing::info!(channel = %p.channel, account = %p.account, sender = %p.sender_id, approve, "channel pairing resolved");
    if !approve {
        return Ok(json!({"requestId": p.code, "senderId": p.sender_id}));
    }
    let notification = if params.get("notify").and_then(Value::as_bool) == Some(true) {
        let key = AccountKey::new(&p.channel, &p.account);
        let msg = OutboundMessage::text(&p.chat_id, None, "You're approved — send your message again and I'll answer.");
        match crate::channels::queue_send(gw, &key, &format!("pairing:{}", p.code), vec![msg]).await {
            Ok(_) => "sent",
            Err(_) => "failed",
        }
    } else {
        "not-requested"
    };
    Ok(json!({"requestId": p.code, "senderId": p.sender_id, "notification": notification,
              "commandOwnerBootstrap": "not-requested"}))
}
