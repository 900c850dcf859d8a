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

/// `GET /readyz` — readiness, no auth: 503 while draining.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let draining = gw.shutdown_token().is_cancelled();
    let body = json!({
        "ready": !draining,
        "failing": if draining { vec!["draining"] } else { vec![] },
        "uptimeMs": gw.uptime().as_millis() as u64,
    });
    let status = if draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
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
        && let Some(token) = webchat::media_token(&gw, &method, uri.path())
    {
        return crate::media::serve(&gw, &token).await;
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
        && let Some(token) = webchat::media_token(&gw, &method, uri.path())
    {
        return crate::media::serve(&gw, &token).await;
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
        Err(_) => webchat::serve(&gw, method, uri.path(), headers)
            .unwrap_or_else(|| (StatusCode::NOT_FOUND, "Not Found").into_response()),
    }
}
