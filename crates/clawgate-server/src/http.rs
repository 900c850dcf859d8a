//! Plain HTTP routes on the gateway port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use clawgate_core::Gateway;

use crate::ws;

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

/// `GET /` — a WebSocket upgrade becomes a control connection; a browser gets the landing page.
pub async fn root(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(up) => ws::upgrade(gw, addr, &headers, up),
        Err(_) => landing(&gw, &headers),
    }
}

/// Any other path: WebSocket upgrades are accepted on every path (as upstream), the rest is 404.
pub async fn fallback(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(up) => ws::upgrade(gw, addr, &headers, up),
        Err(_) => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

fn landing(gw: &Gateway, headers: &HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:18789");
    let host = html_escape(host);
    let version = html_escape(&gw.version);
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clawgate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#222}}code,pre{{background:#f3f3f3;padding:.1rem .3rem;border-radius:4px}}pre{{padding:.8rem;overflow:auto}}</style>
</head><body>
<h1>clawgate {version}</h1>
<p>This is a <strong>clawgate</strong> gateway: an OpenClaw-compatible Gateway (WebSocket protocol 4) with its HTTP API on the same port.</p>
<h2>Connect</h2>
<p>WebSocket URL: <code>ws://{host}/</code>. Clients authenticate with the gateway token (or password).
The token was created on first start; read it with <code>cat ~/.clawgate/gateway-token</code> (or <code>&lt;state-dir&gt;/gateway-token</code>).</p>
<pre>clawgate call health --url ws://{host} --token "$(cat ~/.clawgate/gateway-token)"
openclaw gateway call health --url ws://{host} --token "$(cat ~/.clawgate/gateway-token)" --json</pre>
<p>Unknown devices must be approved: <code>clawgate devices list</code>, then <code>clawgate devices approve &lt;requestId&gt;</code>.</p>
<p>Health: <a href="/healthz">/healthz</a> · Readiness: <a href="/readyz">/readyz</a></p>
</body></html>
"#
    );
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
