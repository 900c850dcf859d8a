//! `device.pair.*` and `device.token.*`.

use clawgate_protocol::close;
use clawgate_protocol::methods::devices::*;
use clawgate_store::{DeviceStore, DeviceTokenStore, PairedDevice, PairingStore, StoreError};

use crate::broadcast::AuthKind;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::events::{Events, pair_requested_payload};
use crate::pairing::PairingService;
use crate::time::now_ms;

fn device_entry(d: PairedDevice) -> PairedDeviceEntry {
    PairedDeviceEntry {
        device_id: d.device_id,
        public_key: d.public_key,
        display_name: d.display_name,
        platform: d.platform,
        device_family: d.device_family,
        client_id: d.client_id,
        client_mode: d.client_mode,
        roles: d.roles,
        scopes: d.scopes,
        approved_via: d.approved_via,
        created_at_ms: d.created_at_ms,
        approved_at_ms: d.approved_at_ms,
        last_seen_at_ms: d.last_seen_at_ms,
    }
}

fn resolved_by(ctx: &CallContext) -> String {
    match &ctx.client.device_id {
        Some(d) => format!("device:{}", &d[..d.len().min(12)]),
        None => format!("conn:{}", ctx.client.conn_id),
    }
}

/// `device.pair.list` → `{pending, paired}`; a pending entry is the request as
/// `device.pair.requested` announced it (schema `DevicePairRequestedEvent`).
pub async fn device_pair_list(
    pairing: &PairingService,
    _: DevicePairListParams,
) -> Result<DevicePairListResult, CoreError> {
    let pending = pairing.store().list_pending().await?;
    let paired = pairing.store().list_paired().await?;
    Ok(DevicePairListResult {
        // A pending request is never silent: silent ones are approved as they are made.
        pending: pending.iter().map(|r| pair_requested_payload(r, false)).collect(),
        paired: paired.into_iter().map(device_entry).collect(),
    })
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
pub async fn device_pair_approve(
    pairing: &PairingService,
    ctx: &CallContext,
    p: DevicePairApproveParams,
) -> Result<DevicePairApproveResult, CoreError> {
    let _pairing = pairing.lock().lock().await;
    let request = pairing
        .store()
        .get_request(&p.request_id)
        .await?
        .ok_or_else(|| CoreError::NotFound(format!("unknown pairing request: {}", p.request_id)))?;
    grantable_by(ctx, &request.scopes)?;
    let device = pairing.approve(&p.request_id, &resolved_by(ctx)).await.map_err(not_found_request(&p.request_id))?;
    tracing::info!(request = %p.request_id, device = %device.device_id, "pairing request approved");
    Ok(DevicePairApproveResult {
        request_id: p.request_id,
        device_id: device.device_id.clone(),
        decision: PairDecision::Approved,
        device: device_entry(device),
    })
}

/// `device.pair.reject {requestId}` → marks the request rejected; broadcasts `device.pair.resolved`.
pub async fn device_pair_reject(
    pairing: &PairingService,
    ctx: &CallContext,
    p: DevicePairRejectParams,
) -> Result<DevicePairRejectResult, CoreError> {
    let r = pairing.reject(&p.request_id, &resolved_by(ctx)).await.map_err(not_found_request(&p.request_id))?;
    tracing::info!(request = %p.request_id, device = %r.device_id, "pairing request rejected");
    Ok(DevicePairRejectResult { request_id: p.request_id, device_id: r.device_id, decision: PairDecision::Rejected })
}

/// `device.pair.remove {deviceId}` → unpairs the device, revokes its tokens and closes its
/// sockets with 4001.
pub async fn device_pair_remove(
    pairing: &PairingService,
    events: &Events,
    p: DevicePairRemoveParams,
) -> Result<DevicePairRemoveResult, CoreError> {
    let removed = pairing.store().remove_paired(&p.device_id).await?;
    let closed = events.clients().close_where(
        |c| c.device_id.as_deref() == Some(p.device_id.as_str()),
        close::CREDENTIALS_CHANGED,
        close::REASON_DEVICE_REVOKED,
    );
    tracing::info!(device = %p.device_id, removed, closed, "device removed");
    Ok(DevicePairRemoveResult { ok: true, device_id: p.device_id, removed })
}

/// `device.token.rotate {deviceId, role, scopes?}` → a new device token (the old one stops
/// working). The token is returned in-band only to the device itself or an admin; anyone else
/// learns that it was rotated but not the secret. The new token's scopes must be within the
/// device's approved scopes and within the caller's own ([`grantable_by`]).
pub async fn device_token_rotate(
    pairing: &PairingService,
    ctx: &CallContext,
    p: DeviceTokenRotateParams,
) -> Result<DeviceTokenRotateResult, CoreError> {
    let device = pairing
        .store()
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
    let (token, record) = pairing.store().issue(&p.device_id, &p.role, &scopes, now_ms()).await?;
    let same_device = ctx.client.device_id.as_deref() == Some(p.device_id.as_str());
    let in_band = same_device || ctx.client.has_scope(clawgate_protocol::scopes::ADMIN);
    Ok(DeviceTokenRotateResult {
        device_id: p.device_id,
        role: p.role,
        scopes: record.scopes,
        rotated_at_ms: record.issued_at_ms,
        delivery: if in_band { TokenDelivery::InBand { token } } else { TokenDelivery::WithheldCrossDevice },
    })
}

/// `device.token.revoke {deviceId, role}` → the device token stops working; sockets that
/// authenticated with it are closed with 4001.
pub async fn device_token_revoke(
    pairing: &PairingService,
    events: &Events,
    p: DeviceTokenRevokeParams,
) -> Result<DeviceTokenRevokeResult, CoreError> {
    let revoked = pairing.store().revoke(&p.device_id, &p.role, now_ms()).await?;
    events.clients().close_where(
        |c| c.device_id.as_deref() == Some(p.device_id.as_str()) && c.role == p.role && c.auth_kind == AuthKind::Device,
        close::CREDENTIALS_CHANGED,
        close::REASON_DEVICE_REVOKED,
    );
    Ok(DeviceTokenRevokeResult { ok: true, device_id: p.device_id, role: p.role, revoked })
}
