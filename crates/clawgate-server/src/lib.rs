//! The gateway's network face: one axum server on one port carrying the OpenClaw WebSocket
//! protocol (any path) and the HTTP routes (`/healthz`, `/readyz`, the built-in web chat of
//! `webchat`, and the HTTP API of `http_api`: `/v1/*`, `/tools/invoke`, the hooks).
//!
//! It owns sockets, framing limits and the per-connection reader/writer tasks; what a frame
//! *means* is decided by `clawgate-core`. Graceful shutdown is driven by the gateway's
//! cancellation token.
#![warn(missing_docs)]

mod channel_webhooks;
pub mod control_ui;
mod http;
mod http_api;
mod listener;
mod media;
mod metrics;
mod origin;
mod tls;
mod webchat;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use tokio::net::TcpListener;

use clawgate_core::Gateway;
use clawgate_core::channels::{ChannelService, GatewayIngress};
use clawgate_core::dispatch::Dispatcher;
use clawgate_core::gateway::Store;
use clawgate_core::handshake::AuthService;
use clawgate_core::health::HealthService;
use clawgate_core::media::MediaSigner;
use clawgate_core::settings::SharedSettings;
use clawgate_core::tasks::Tasks;

pub use tls::Tls;

/// The router's state. Every handler and middleware takes only the parts it uses, as
/// `State<Part>` (each part is `FromRef<AppState>`); none takes the whole gateway.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// `/` and unrouted paths: WebSocket upgrades, the web chat.
    front: http::Front,
    /// Bearer checks and the webhook-secret limiter.
    auth: AuthService,
    /// Uptime for `/readyz`.
    health: HealthService,
    /// The settings in force (the origin gate).
    settings: SharedSettings,
    /// Storage health for `/readyz`.
    store: Store,
    /// Draining state for `/readyz`.
    tasks: Tasks,
    /// The HTTP API's handles.
    api: http_api::Api,
    /// `/media/{token}`.
    media: MediaSigner,
    /// Channel webhooks: the running accounts (their webhook paths) and where updates go.
    channels: ChannelService,
    ingress: GatewayIngress,
    /// `/metrics`.
    scrape: metrics::Scrape,
}

impl AppState {
    fn new(gw: Arc<Gateway>) -> Self {
        Self {
            front: http::Front {
                ws: ws::Connections {
                    auth: gw.auth.clone(),
                    health: gw.health.clone(),
                    events: gw.events.clone(),
                    tasks: gw.tasks().clone(),
                    dispatcher: Dispatcher::new(gw.clone()),
                    nodes: gw.nodes.clone(),
                    metrics: gw.metrics.clone(),
                },
                config: gw.config.clone(),
                media: gw.media.clone(),
            },
            auth: gw.auth.clone(),
            health: gw.health.clone(),
            settings: gw.shared_settings().clone(),
            store: gw.store.clone(),
            tasks: gw.tasks().clone(),
            api: http_api::Api::new(
                gw.agents.clone(),
                gw.store.clone(),
                gw.heartbeat.clone(),
                gw.config.clone(),
                gw.auth.clone(),
            ),
            media: gw.media.clone(),
            channels: gw.channels.clone(),
            ingress: gw.channels.ingress(),
            scrape: metrics::Scrape {
                metrics: gw.metrics.clone(),
                auth: gw.auth.clone(),
                store: gw.store.clone(),
                channels: gw.channels.clone(),
                comfy: gw.comfy.clone(),
            },
        }
    }
}

macro_rules! state_parts {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        }
    )*};
}

state_parts! {
    front: http::Front,
    auth: AuthService,
    health: HealthService,
    settings: SharedSettings,
    store: Store,
    tasks: Tasks,
    api: http_api::Api,
    media: MediaSigner,
    channels: ChannelService,
    ingress: GatewayIngress,
    scrape: metrics::Scrape,
}

/// Build the router for a gateway.
pub fn router(gw: Arc<Gateway>) -> Router {
    let state = AppState::new(gw);
    let routes = Router::new()
        .route("/", get(http::root))
        .route("/healthz", get(http::healthz))
        .route("/health", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/ready", get(http::readyz))
        .route("/media/{token}", get(media::get_media))
        .route("/metrics", get(metrics::get_metrics))
        .fallback(http::fallback);
    // Channel webhooks (Telegram webhook mode) are matched in front of everything, as their
    // paths come from the running accounts.
    // The origin gate is outermost: a cross-site browser request is refused before any route,
    // hook or webhook reads its body.
    http_api::mount(routes, &state)
        .layer(axum::middleware::from_fn_with_state(state.clone(), channel_webhooks::layer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::guard))
        .with_state(state)
}

/// Serve only `GET /metrics`, without authentication, on a loopback listener
/// (`gateway.metrics.listen`; the config refuses other addresses) until shutdown.
pub async fn serve_metrics(listener: TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    let token = gw.shutdown_token();
    let limits = gw.settings().http_limits;
    let scrape = AppState::new(gw).scrape;
    let routes = Router::new()
        .route("/metrics", get(metrics::get_metrics_local))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "Not Found") })
        .with_state(scrape);
    listener::run(listener, routes, limits, None, token).await
}

/// Serve until the gateway's shutdown token is cancelled (see `listener` for the limits every
/// connection is held to).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    let token = gw.shutdown_token();
    let limits = gw.settings().http_limits;
    listener::run(listener, router(gw), limits, None, token).await
}

/// [`serve`] over TLS (`gateway.tls`): every connection is a TLS one, with the pair in `tls`
/// (re-read when its files change).
pub async fn serve_tls(listener: TcpListener, gw: Arc<Gateway>, tls: Arc<Tls>) -> std::io::Result<()> {
    let token = gw.shutdown_token();
    let limits = gw.settings().http_limits;
    listener::run(listener, router(gw), limits, Some(tls), token).await
}
