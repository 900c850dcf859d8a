//! Webhook POSTs of chat channels (Telegram webhook mode), on the gateway's own port.
//!
//! A request is matched against the webhook paths of the running channel accounts on every
//! call (accounts start and stop with config reloads); anything else passes through. The
//! adapter checks the platform's secret in constant time and records the update through the
//! gateway's ingress; the answer is 200 only once it is recorded, so the platform redelivers
//! whatever clawgate could not take.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use clawgate_channels::{WebhookError, WebhookRequest};
use clawgate_core::Gateway;
use clawgate_core::channels::GatewayIngress;

/// Largest webhook body taken (a Telegram update is a few KiB).
const MAX_BODY: usize = 1024 * 1024;

pub(crate) async fn layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let Some(rt) = gw.channels.accounts().into_iter().find(|rt| rt.channel.webhook_path().as_deref() == Some(&path))
    else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
        .collect();
    let bytes = match to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large").into_response(),
    };
    let ingress = GatewayIngress::new(&gw);
    match rt.channel.handle_webhook(WebhookRequest { headers: &headers, body: &bytes }, &ingress).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(WebhookError::NotFound) => (StatusCode::NOT_FOUND, "Not Found").into_response(),
        Err(WebhookError::Unauthorized) => {
            tracing::warn!(account = %rt.cfg.key, "webhook with a missing or wrong secret refused");
            (StatusCode::UNAUTHORIZED, "unauthorized").into_response()
        }
        Err(WebhookError::BadRequest(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
        Err(WebhookError::Unavailable(why)) => {
            tracing::warn!(account = %rt.cfg.key, error = %why, "webhook update not recorded; the platform will retry");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}
