//! `channels.status`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::CoreError;
use crate::gateway::Gateway;

/// `channels.status {probe?, timeoutMs?, channel?}` → the status of every configured channel.
/// No channel is implemented yet, so the honest answer is an empty status.
pub async fn channels_status(_gw: &Arc<Gateway>, _params: Value) -> Result<Value, CoreError> {
    Ok(json!({
        "ts": crate::time::now_ms(),
        "channelOrder": [],
        "channelLabels": {},
        "channels": {},
        "channelAccounts": {},
        "channelDefaultAccountId": {},
    }))
}
