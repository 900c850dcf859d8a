//! Plain HTTP routes on the gateway port.

use std::net::SocketAddr;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use clawgate_core::config_service::ConfigService;
use clawgate_core::gateway::Store;
use clawgate_core::health::HealthService;
use clawgate_core::media::MediaSigner;
use clawgate_core::tasks::Tasks;

use crate::{control_ui, webchat, ws};

/// What `/` and every unrouted path serve: WebSocket upgrades, the web chat page (or the
/// Control UI of `gateway.controlUi.root`) and media links below its base path.
#[derive(Debug, Clone)]
pub(crate) struct Front {
    /// What a control connection uses.
    pub(crate) ws: ws::Connections,
    /// The web chat's settings (`gateway.controlUi.*`).
    pub(crate) config: ConfigService,
    /// Media links below the web chat's base path.
    pub(crate) media: MediaSigner,
}

/// `GET /healthz` — liveness, no auth.
pub async fn healthz() -> Response {
    axum::Json(json!({"ok": true, "status": "live"})).into_response()
}

/// `GET /readyz` — readiness, no auth: 503 while draining, while storage is degraded (a write
/// failed for a full disk or an I/O error and none has succeeded since) or when the store does
/// not answer a cheap query; `reason` then says why, e.g. `"disk full: …"`. The success shape is
/// unchanged.
pub async fn readyz(
    State(tasks): State<Tasks>,
    State(store): State<Store>,
    State(health): State<HealthService>,
) -> Response {
    let draining = tasks.is_stopping();
    // A cheap read tells whether the database still answers at all (a write error alone does
    // not: a locked, removed or corrupt file fails reads first).
    let unreadable = match clawgate_store::SessionStore::count_sessions(&store).await {
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "readyz: the store did not answer a query");
            Some("storage: the store did not answer a query".to_owned())
        }
    };
    let degraded = store.degraded().map(|d| d.reason).or(unreadable);
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
        "uptimeMs": health.info().uptime().as_millis() as u64,
    });
    if let Some(reason) = degraded {
        body["reason"] = json!(reason);
    } else if draining {
        body["reason"] = json!("draining");
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// `GET /` — a WebSocket upgrade becomes a control connection; a browser gets the web chat.
pub(crate) async fn root(
    State(front): State<Front>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if upgrade.is_err()
        && let Some(token) = webchat::media_token(&front.config, &method, uri.path())
    {
        return crate::media::serve(&front.media, &token).await;
    }
    upgrade_or_page(front, addr, &method, &uri, &headers, upgrade).await
}

/// Any other path: WebSocket upgrades are accepted on every path (as upstream), the web chat is
/// served below its base path, the rest is 404.
pub(crate) async fn fallback(
    State(front): State<Front>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if upgrade.is_err()
        && let Some(token) = webchat::media_token(&front.config, &method, uri.path())
    {
        return crate::media::serve(&front.media, &token).await;
    }
    upgrade_or_page(front, addr, &method, &uri, &headers, upgrade).await
}

async fn upgrade_or_page(
    front: Front,
    addr: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(up) => ws::upgrade(front.ws, addr, headers, up),
        Err(_) => {
            let config = front.config.current();
            let page = match control_ui::configured_root(&config) {
                Some(root) => {
                    let base = &config.config.gateway.control_ui.base_path;
                    control_ui::serve(&root, base, method, uri, headers).await
                }
                None => webchat::serve(&front.config, method, uri.path(), headers),
            };
            page.unwrap_or_else(|| (StatusCode::NOT_FOUND, "Not Found").into_response())
        }
    }
}
