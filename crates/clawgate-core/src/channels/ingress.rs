//! The gateway's [`Ingress`]: where adapters hand inbound messages.

use async_trait::async_trait;

use clawgate_channels::fault::crash_point;
use clawgate_channels::{Accepted, AccountKey, InboundMessage, Ingress, IngressError};
use clawgate_store::{ChannelStore, InboxRecord, InboxStatus, KvStore};

use super::ChannelService;
use crate::time::now_ms;

/// Records inbound messages in the inbox, then routes them on their own task. Holds the channel
/// service (a handle), never the gateway.
#[derive(Debug, Clone)]
pub struct GatewayIngress {
    channels: ChannelService,
}

impl GatewayIngress {
    /// An ingress feeding these channels (see [`ChannelService::ingress`]).
    pub(crate) fn new(channels: ChannelService) -> Self {
        Self { channels }
    }
}

/// Where an account's durable adapter state lives in the KvStore: every key under this prefix
/// (a logout deletes them all).
pub(crate) fn state_prefix(account: &AccountKey) -> String {
    format!("channel:{}:{}:", account.channel, account.account)
}

fn state_key(account: &AccountKey, key: &str) -> String {
    format!("{}{key}", state_prefix(account))
}

#[async_trait]
impl Ingress for GatewayIngress {
    async fn deliver(&self, message: InboundMessage) -> Result<Accepted, IngressError> {
        let json = serde_json::to_value(&message).map_err(|e| IngressError(e.to_string()))?;
        let now = now_ms();
        let metrics = self.channels.outbox().metrics();
        let record = self.channels.store().record_inbound(
            &message.channel,
            &message.account,
            &message.message_id,
            &message.chat_id,
            &message.sender_id,
            &json,
            now,
        );
        let recorded = metrics.time_store("inbox_record", record).await.map_err(|e| IngressError(e.to_string()))?;
        let Some(id) = recorded else {
            tracing::debug!(channel = %message.channel, account = %message.account, message = %message.message_id,
                            "inbound message already recorded; dropped");
            return Ok(Accepted::Duplicate);
        };
        crash_point("inbox.recorded");
        metrics.channel_message(&message.channel, crate::metrics::Direction::Inbound);
        let rec = InboxRecord {
            id,
            channel: message.channel.clone(),
            account: message.account.clone(),
            message_id: message.message_id.clone(),
            chat_id: message.chat_id.clone(),
            sender_id: message.sender_id.clone(),
            message: json,
            status: InboxStatus::Received,
            reason: None,
            run_id: None,
            session_key: None,
            received_at_ms: now,
            updated_at_ms: now,
        };
        self.channels.spawn_route(rec);
        Ok(Accepted::New)
    }

    async fn load_state(&self, account: &AccountKey, key: &str) -> Option<String> {
        match self.channels.store().get(&state_key(account, key)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(account = %account, key, error = %e, "cannot read channel state");
                None
            }
        }
    }

    async fn save_state(&self, account: &AccountKey, key: &str, value: &str) -> Result<(), IngressError> {
        self.channels.store().set(&state_key(account, key), value).await.map_err(|e| IngressError(e.to_string()))
    }
}

/// Parse the stored message of an inbox row.
pub(crate) fn inbound_of(rec: &InboxRecord) -> Option<InboundMessage> {
    serde_json::from_value::<InboundMessage>(rec.message.clone()).ok().or_else(|| {
        tracing::error!(id = rec.id, "inbox row holds an unreadable message; dropping it");
        None
    })
}
