//! The browser-origin gate in front of every HTTP route that changes something.
//!
//! Class closed: cross-site request forgery and DNS rebinding against the HTTP API. A page on
//! any site can make the victim's browser POST to `http://127.0.0.1:18789` (a `text/plain` body
//! needs no CORS preflight), and with `gateway.auth.mode: none` — or a hook token the page
//! learnt — that runs the agent or a tool. Browsers label such requests with `Origin` (and
//! `Sec-Fetch-Site`); CLIs and SDKs send neither, so they are unaffected. The rule is the one the
//! WebSocket handshake uses ([`clawgate_core::handshake::origin_allowed`]): only loopback origins
//! on a loopback connection, or those listed in `gateway.controlUi.allowedOrigins`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use clawgate_core::client_addr::client_peer;
use clawgate_core::handshake::origin_allowed;
use clawgate_core::settings::{GatewaySettings, SharedSettings};

/// The message of the 403, naming the setting that allows an origin.
pub(crate) const ORIGIN_REFUSED: &str = "origin not allowed: browser requests to the gateway API must come from a loopback origin or one listed in gateway.controlUi.allowedOrigins";

/// Whether a request with these headers, from a peer on loopback or not, may go on. Safe methods
/// (`GET`, `HEAD`, `OPTIONS`) always may: they change nothing, and without CORS headers a
/// cross-site page cannot read their answers.
pub(crate) fn browser_request_allowed(
    settings: &GatewaySettings,
    method: &Method,
    headers: &HeaderMap,
    remote_is_loopback: bool,
) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match text("origin") {
        Some(origin) => origin_allowed(
            origin,
            text("host"),
            remote_is_loopback,
            &settings.allowed_origins,
            settings.allow_host_header_origin,
        ),
        // A browser that left `Origin` out still says where the request came from.
        None => !matches!(text("sec-fetch-site"), Some("cross-site" | "same-site")),
    }
}

/// Middleware: answers 403 to a browser request from an origin that is not allowed, before any
/// route (and before any body is read).
pub(crate) async fn guard(State(settings): State<SharedSettings>, req: Request, next: Next) -> Response {
    let settings = settings.get();
    // A forwarded request is never local, even through a loopback proxy.
    let remote_is_loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| client_peer(a.ip(), req.headers(), &settings.proxy_trust).is_direct_loopback());
    if browser_request_allowed(&settings, req.method(), req.headers(), remote_is_loopback) {
        return next.run(req).await;
    }
    tracing::warn!(
        origin = ?req.headers().get("origin"),
        path = %req.uri().path(),
        "refusing a cross-site browser request (origin not in gateway.controlUi.allowedOrigins)"
    );
    let mut response = (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"error": {"message": ORIGIN_REFUSED, "type": "origin_not_allowed"}})),
    )
        .into_response();
    // The answer to a refused request is never something a cross-site page should be able to read.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
