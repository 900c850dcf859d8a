//! `device.pair.*` and `device.token.*`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use clawgate_protocol::close;
use clawgate_store::{
    DeviceStore, DeviceTokenStore, PairedDevice, PairingDecision, PairingRequest, PairingStore, StoreError,
};

use crate::broadcast::AuthKind;
use crate::dispatch::CallContext;
use crate::error::{CoreError, parse_params};
use crate::gateway::Gateway;
use crate::time::now_ms;

fn request_json(r: &PairingRequest) -> Value {
    let mut v = json!({
        "requestId": r.request_id,
        "deviceId": r.device_id,
        "publicKey": r.public_key,
        "role": r.role,
        "scopes": r.scopes,
        "reason": r.reason,
        "status": r.status.as_str(),
        "ts": r.updated_at_ms,
        "createdAtMs": r.created_at_ms,
    });
    for (k, val) in [
        ("displayName", &r.display_name),
        ("platform", &r.platform),
        ("deviceFamily", &r.device_family),
        ("clientId", &r.client_id),
        ("clientMode", &r.client_mode),
        ("remoteIp", &r.remote_ip),
    ] {
        if let Some(val) = val {
            v[k] = json!(val);
        }
    }
    v
}

fn device_json(d: &PairedDevice) -> Value {
    json!({
        "deviceId": d.device_id,
        "publicKey": d.public_key,
        "displayName": d.display_name,
        "platform": d.platform,
        "deviceFamily": d.device_family,
        "clientId": d.client_id,
        "clientMode": d.client_mode,
        "roles": d.roles,
        "scopes": d.scopes,
        "approvedVia": d.approved_via,
        "createdAtMs": d.created_at_ms,
        "approvedAtMs": d.approved_at_ms,
        "lastSeenAtMs": d.last_seen_at_ms,
    })
}

fn resolved_by(ctx: &CallContext) -> String {
    match &ctx.client.device_id {
        Some(d) => format!("device:{}", &d[..d.len().min(12)]),
        None => format!("conn:{}", ctx.client.conn_id),
    }
}

/// `device.pair.list` → `{pending, paired}`.
pub async fn device_pair_list(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    let pending = gw.store.list_pending().await?;
    let paired = gw.store.list_paired().await?;
    Ok(json!({
        "pending": pending.iter().map(request_json).collect::<Vec<_>>(),
        "paired": paired.iter().map(device_json).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestIdParams {
    request_id: String,
}

fn not_found_request(id: &str) -> impl FnOnce(StoreError) -> CoreError + '_ {
    move |e| match e {
        StoreError::NotFound => CoreError::NotFound(format!("unknown pairing request: {id}")),
        StoreError::Conflict(_) => CoreError::invalid(format!("pairing request {id} was already resolved")),
        other => CoreError::from(other),
    }
}

/// The one gate every grant goes through (issue 10, defect 1: a caller holding only
/// `operator.pairing` approved a request for `operator.admin`, and the new device then rotated its
/// token at admin scope). Closes the class "a grant path hands out more than its caller holds":
/// the caller may grant only scopes its own connection satisfies (`operator.admin` satisfies
/// all), and scopes that do not exist are never granted. Returns the scopes to grant.
pub fn grantable_by(ctx: &CallContext, requested: &[String]) -> Result<Vec<String>, CoreError> {
    let requested = clawgate_protocol::scopes::known_only(requested);
    match clawgate_protocol::scopes::first_not_grantable(&requested, &ctx.client.scopes) {
        Some(missing) => {
            tracing::warn!(conn = %ctx.client.conn_id, scope = missing, reason = "caller-missing-scope",
                "refused a grant of a scope the caller does not hold");
            Err(CoreError::MissingScope { scope: missing.to_owned(), reason: "caller-missing-scope" })
        }
        None => Ok(requested),
    }
}

/// `device.pair.approve {requestId}` → pairs the device; broadcasts `device.pair.resolved`.
/// The caller must hold every scope the request asks for ([`grantable_by`]).
pub async fn device_pair_approve(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let p: RequestIdParams = parse_params("device.pair.approve", params)?;
    let _pairing = gw.pairing_lock.lock().await;
    let request = gw
        .store
        .get_request(&p.request_id)
        .await?
        .ok_or_else(|| CoreError::NotFound(format!("unknown pairing request: {}", p.request_id)))?;
    grantable_by(ctx, &request.scopes)?;
    let device = gw
        .store
        .approve_request(&p.request_id, &resolved_by(ctx), now_ms())
        .await
        .map_err(not_found_request(&p.request_id))?;
    gw.announce_pair_resolved(&p.request_id, &device.device_id, "approved");
    tracing::info!(request = %p.request_id, device = %device.device_id, "pairing request approved");
    Ok(
        json!({"requestId": p.request_id, "deviceId": device.device_id, "decision": "approved", "device": device_json(&device)}),
    )
}

/// `device.pair.reject {requestId}` → marks the request rejected; broadcasts `device.pair.resolved`.
pub async fn device_pair_reject(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let p: RequestIdParams = parse_params("device.pair.reject", params)?;
    let r = gw
        .store
        .resolve_request(&p.request_id, PairingDecision::Reject, &resolved_by(ctx), now_ms())
        .await
        .map_err(not_found_request(&p.request_id))?;
    gw.announce_pair_resolved(&p.request_id, &r.device_id, "rejected");
    tracing::info!(request = %p.request_id, device = %r.device_id, "pairing request rejected");
    Ok(json!({"requestId": p.request_id, "deviceId": r.device_id, "decision": "rejected"}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceIdParams {
    device_id: String,
}

/// `device.pair.remove {deviceId}` → unpairs the device, revokes its tokens and closes its
/// sockets with 4001.
pub async fn device_pair_remove(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: DeviceIdParams = parse_params("device.pair.remove", params)?;
    let removed = gw.store.remove_paired(&p.device_id).await?;
    let closed = gw.clients.close_where(
        |c| c.device_id.as_deref() == Some(p.device_id.as_str()),
        close::CREDENTIALS_CHANGED,
        close::REASON_DEVICE_REVOKED,
    );
    tracing::info!(device = %p.device_id, removed, closed, "device removed");
    Ok(json!({"ok": true, "deviceId": p.device_id, "removed": removed}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateParams {
    device_id: String,
    role: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// `device.token.rotate {deviceId, role, scopes?}` → a new device token (the old one stops
/// working). The token is returned in-band only to the device itself or an admin; anyone else
/// learns that it was rotated but not the secret. The new token's scopes must be within the
/// device's approved scopes and within the caller's own ([`grantable_by`]).
pub async fn device_token_rotate(gw: &Arc<Gateway>, ctx: &CallContext, params: Value) -> Result<Value, CoreError> {
    let p: RotateParams = parse_params("device.token.rotate", params)?;
    let device = gw
        .store
        .get_paired(&p.device_id)
        .await?
        .ok_or_else(|| CoreError::NotFound(format!("unknown device: {}", p.device_id)))?;
    if !device.roles.iter().any(|r| r == &p.role) {
        return Err(CoreError::invalid(format!("device {} is not approved for role {}", p.device_id, p.role)));
    }
    let scopes = grantable_by(ctx, &p.scopes.unwrap_or_else(|| device.scopes.clone()))?;
    if !clawgate_protocol::scopes::all_covered(&scopes, &device.scopes) {
        return Err(CoreError::invalid("requested scopes exceed the device's approved scopes"));
    }
    let (token, record) = gw.store.issue(&p.device_id, &p.role, &scopes, now_ms()).await?;
    let same_device = ctx.client.device_id.as_deref() == Some(p.device_id.as_str());
    let in_band = same_device || ctx.client.has_scope(clawgate_protocol::scopes::ADMIN);
    let mut out = json!({
        "deviceId": p.device_id,
        "role": p.role,
        "scopes": record.scopes,
        "rotatedAtMs": record.issued_at_ms,
        "tokenDelivery": if in_band { "in-band" } else { "withheld-cross-device" },
    });
    if in_band {
        out["token"] = json!(token);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeParams {
    device_id: String,
    role: String,
}

/// `device.token.revoke {deviceId, role}` → the device token stops working; sockets that
/// authenticated with it are closed with 4001.
pub async fn device_token_revoke(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p: RevokeParams = parse_params("device.token.revoke", params)?;
    let revoked = gw.store.revoke(&p.device_id, &p.role, now_ms()).await?;
    gw.clients.close_where(
        |c| c.device_id.as_deref() == Some(p.device_id.as_str()) && c.role == p.role && c.auth_kind == AuthKind::Device,
        close::CREDENTIALS_CHANGED,
        close::REASON_DEVICE_REVOKED,
    );
    Ok(json!({"ok": true, "deviceId": p.device_id, "role": p.role, "revoked": revoked}))
}
