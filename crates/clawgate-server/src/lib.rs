//! The gateway's network face: one axum server on one port carrying the OpenClaw WebSocket
//! protocol (any path) and the HTTP routes (`/healthz`, `/readyz`, the built-in web chat of
//! `webchat`, and the HTTP API of `http_api`: `/v1/*`, `/tools/invoke`, the hooks).
//!
//! It owns sockets, framing limits and the per-connection reader/writer tasks; what a frame
//! *means* is decided by `clawgate-core`. Graceful shutdown is driven by the gateway's
//! cancellation token.
#![warn(missing_docs)]

mod channel_webhooks;
mod http;
mod http_api;
mod listener;
mod media;
mod origin;
mod webchat;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use clawgate_core::Gateway;

/// Build the router for a gateway.
pub fn router(gw: Arc<Gateway>) -> Router {
    let routes = Router::new()
        .route("/", get(http::root))
        .route("/healthz", get(http::healthz))
        .route("/health", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/ready", get(http::readyz))
        .route("/media/{token}", get(media::get_media))
        .fallback(http::fallback);
    // Channel webhooks (Telegram webhook mode) are matched in front of everything, as their
    // paths come from the running accounts.
    // The origin gate is outermost: a cross-site browser request is refused before any route,
    // hook or webhook reads its body.
    http_api::mount(routes, &gw)
        .layer(axum::middleware::from_fn_with_state(gw.clone(), channel_webhooks::layer))
        .layer(axum::middleware::from_fn_with_state(gw.clone(), origin::guard))
        .with_state(gw)
}

/// Serve until the gateway's shutdown token is cancelled (see `listener` for the limits every
/// connection is held to).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    let token = gw.shutdown_token();
    let limits = gw.settings().http_limits;
    listener::run(listener, router(gw), limits, token).await
}
