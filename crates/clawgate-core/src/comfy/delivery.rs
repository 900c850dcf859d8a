//! Delivering a job's notices and outputs to a chat platform's chat (`deliver_to = {channel,
//! account, chatId, threadId?}`) through the outbox: each item once per idempotency key. A web
//! chat session is [`super::webchat`]'s.

use std::path::PathBuf;

use serde_json::Value;

use clawgate_channels::{AccountKey, MediaSource, OutboundMedia, OutboundMessage};
use clawgate_store::{JobRecord, NewOutbound};

use crate::channels::Outbox;
use crate::media::MediaSigner;

fn deliver_target(job: &JobRecord) -> Option<(AccountKey, String, Option<String>)> {
    let d = job.deliver_to.as_ref()?;
    let channel = d.get("channel")?.as_str()?;
    let account = d.get("account").and_then(Value::as_str).unwrap_or("default");
    let chat = d.get("chatId")?.as_str()?.to_owned();
    let thread = d.get("threadId").and_then(Value::as_str).map(str::to_owned);
    Some((AccountKey::new(channel, account), chat, thread))
}

pub(super) async fn deliver_text(outbox: &Outbox, job: &JobRecord, key: &str, text: &str) {
    let Some((account, chat, thread)) = deliver_target(job) else { return };
    let msg = OutboundMessage::text(&chat, thread, text);
    let item = NewOutbound {
        idempotency_key: key.to_owned(),
        channel: account.channel.clone(),
        account: account.account.clone(),
        chat_id: chat,
        payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
    };
    if let Err(e) = outbox.queue(&[item], None).await {
        tracing::error!(job = %job.id, error = %e, "cannot queue the job notice");
    }
}

/// Queue every stored output of a completed job for its chat (each once: the outbox key is the
/// job and file), then a summary line naming anything that could not be delivered.
pub(super) async fn deliver_outputs(outbox: &Outbox, media: &MediaSigner, job: &JobRecord, problems: &[String]) {
    let Some((account, chat, thread)) = deliver_target(job) else { return };
    let mut items = Vec::new();
    let mut problems = problems.to_vec();
    // LINE takes no uploads: it fetches each image from an absolute HTTPS link.
    let fetch_limit = crate::media::fetched_by_url(&account.channel);
    for out in job.outputs.as_array().into_iter().flatten() {
        let (Some(name), Some(path)) =
            (out.get("filename").and_then(Value::as_str), out.get("path").and_then(Value::as_str))
        else {
            continue;
        };
        let size = out.get("bytes").and_then(Value::as_u64);
        let source = match fetch_limit {
            None => MediaSource::Path { path: PathBuf::from(path) },
            Some(max) if size.is_some_and(|s| s > max) => {
                problems.push(format!("{name} is over the {} MB this platform takes", max / (1024 * 1024)));
                continue;
            }
            Some(_) => match media.public_link(job, name).await {
                Ok(url) => MediaSource::Url { url },
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            },
        };
        let mut msg = OutboundMessage::text(&chat, thread.clone(), "");
        msg.media = Some(OutboundMedia {
            filename: name.to_owned(),
            content_type: if name.ends_with(".png") { "image/png".into() } else { "application/octet-stream".into() },
            source,
            size,
            force_document: false,
        });
        items.push(NewOutbound {
            idempotency_key: format!("job:{}:{name}", job.id),
            channel: account.channel.clone(),
            account: account.account.clone(),
            chat_id: chat.clone(),
            payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
        });
    }
    let mut text = format!("[Job Completed]\nID: {}\nTemplate: {}\nImages: {}", job.id, job.template_id, items.len());
    for p in &problems {
        text.push_str(&format!("\nNot delivered: {p}"));
    }
    let msg = OutboundMessage::text(&chat, thread, text);
    items.push(NewOutbound {
        idempotency_key: format!("job:{}:done", job.id),
        channel: account.channel.clone(),
        account: account.account.clone(),
        chat_id: chat,
        payload: serde_json::to_value(&msg).unwrap_or(Value::Null),
    });
    if let Err(e) = outbox.queue(&items, None).await {
        tracing::error!(job = %job.id, error = %e, "cannot queue the job's images");
    }
}
