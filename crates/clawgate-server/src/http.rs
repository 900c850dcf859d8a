//! Plain HTTP routes on the gateway port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use clawgate_core::Gateway;

use crate::{webchat, ws};

/// `GET /healthz` — liveness, no auth.
pub async fn healthz() -> Response {
    axum::Json(json!({"ok": true, "status": "live"})).into_response()
}

/// `GET /readyz` — readiness, no auth: 503 while draining or while storage is degraded (a
/// write failed for a full disk or an I/O error and none has succeeded since); `reason` then
/// says why, e.g. `"disk full: …"`. The success shape is unchanged.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let draining = gw.shutdown_token().is_cancelled();
    let degraded = gw.store.degraded();
    let mut failing = Vec::new();
    if draining {
        failing.push("draining");
    }
    if degraded.is_some() {
        failing.push("storage");
    }
    let ready = failing.is_empty();
    let mut body = json!({
        "ready": ready,
        "failing": failing,
        "uptimeMs": gw.uptime().as_millis() as u64,
    });
    if let Some(d) = degraded {
        body["reason"] = json!(d.reason);
    } else if draining {
        body["reason"] = json!("draining");
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// `GET /` — a WebSocket upgrade becomes a control connection; a browser gets the web chat.
pub async fn root(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if upgrade.is_err()
        && let Some(token) = webchat::media_token(&gw.config, &method, uri.path())
    {
        return crate::media::serve(&gw.media, &token).await;
    }
    upgrade_or_page(gw, addr, &method, &uri, &headers, upgrade)
}

/// Any other path: WebSocket upgrades are accepted on every path (as upstream), the web chat is
/// served below its base path, the rest is 404.
pub async fn fallback(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if upgrade.is_err()
        && let Some(token) = webchat::media_token(&gw.config, &method, uri.path())
    {
        return crate::media::serve(&gw.media, &token).await;
    }
    upgrade_or_page(gw, addr, &method, &uri, &headers, upgrade)
}

fn upgrade_or_page(
    gw: Arc<Gateway>,
    addr: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(up) => ws::upgrade(gw, addr, headers, up),
        Err(_) => webchat::serve(&gw.config, method, uri.path(), headers)
            .unwrap_or_else(|| (StatusCode::NOT_FOUND, "Not Found").into_response()),
    }
}
