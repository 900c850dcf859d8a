//! Webhooks of chat channels (Telegram webhook mode, WhatsApp, LINE, Slack HTTP, the webhook
//! channel's backends), on the gateway's own port: POSTs
//! carry updates; a GET is a platform's verification handshake (WhatsApp's `hub.challenge`).
//!
//! A request is matched against the webhook paths of the running channel accounts on every
//! call (accounts start and stop with config reloads); anything else passes through. The
//! adapter checks the platform's secret in constant time and records the update through the
//! gateway's ingress; the answer is 200 only once it is recorded, so the platform redelivers
//! whatever clawgate could not take.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use clawgate_channels::{WebhookError, WebhookRequest};
use clawgate_core::auth::{Peer, limiter_bucket};
use clawgate_core::channels::{ChannelService, GatewayIngress};
use clawgate_core::client_addr::client_peer;
use clawgate_core::handshake::AuthService;
use clawgate_core::settings::RateLimitSettings;

/// Failed webhook secrets per address bucket: ten a minute, then a minute of 429 for every
/// request from that bucket, right secret or not (issue 10, defect 8: the secret could be
/// guessed at full speed, and every failure wrote a WARN line to a log that is never rotated).
/// The platform redelivers what it could not deliver, so a lockout delays updates, never loses
/// them.
const WEBHOOK_FAILURES: RateLimitSettings = RateLimitSettings {
    max_attempts: 10,
    window: Duration::from_secs(60),
    lockout: Duration::from_secs(60),
    exempt_loopback: false,
};

pub(crate) async fn layer(
    State(auth): State<AuthService>,
    State(channels): State<ChannelService>,
    State(ingress): State<GatewayIngress>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST && req.method() != Method::GET {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let Some(rt) = channels.accounts().into_iter().find(|rt| rt.channel.webhook_paths().contains(&path)) else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let peer = client_peer(ip, req.headers(), &auth.settings().proxy_trust);
    let locked = auth.webhook_failures().lock().check(peer, &WEBHOOK_FAILURES, Instant::now());
    if let Err(wait) = locked {
        return throttled(wait);
    }
    if req.method() == Method::GET {
        // A platform's verification handshake (WhatsApp's `hub.challenge`); a channel without
        // one leaves GETs of its path to the rest of the server.
        let query = Query::<Vec<(String, String)>>::try_from_uri(req.uri()).map(|Query(q)| q).unwrap_or_default();
        return match rt.channel.verify_webhook(&query) {
            Ok(challenge) => {
                (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], challenge)
                    .into_response()
            }
            Err(WebhookError::NotFound) => next.run(req).await,
            Err(WebhookError::BadRequest(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
            Err(_) => refuse(
                &auth,
                peer,
                &rt.cfg.key,
                "too many webhook verifications with a wrong token; refusing this address for a while",
                "webhook verification with a wrong verify token refused",
                (StatusCode::FORBIDDEN, "forbidden"),
            ),
        };
    }
    let limit = rt.channel.max_webhook_body();
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
        .collect();
    let bytes = match to_bytes(Body::new(body), limit).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large").into_response(),
    };
    match rt.channel.webhook_respond(WebhookRequest { headers: &headers, body: &bytes }, &ingress).await {
        Ok(reply) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            (status, [(axum::http::header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
        }
        Err(WebhookError::NotFound) => (StatusCode::NOT_FOUND, "Not Found").into_response(),
        Err(WebhookError::Unauthorized) => refuse(
            &auth,
            peer,
            &rt.cfg.key,
            "too many webhook requests with a wrong secret; refusing this address for a while",
            "webhook with a missing or wrong secret refused",
            (StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        Err(WebhookError::BadRequest(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
        Err(WebhookError::Forbidden) => (StatusCode::FORBIDDEN, "forbidden").into_response(),
        Err(WebhookError::Unavailable(why)) => {
            tracing::warn!(account = %rt.cfg.key, error = %why, "webhook update not recorded; the platform will retry");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

/// A wrong secret, signature or verify token: counted against the address's bucket, answered
/// with `refused` (or 429 once the bucket is locked out). One WARN when a bucket starts failing
/// and one when it is locked out; the rest are counted without a line each.
fn refuse(
    auth: &AuthService,
    peer: Peer,
    account: &impl std::fmt::Display,
    locked: &str,
    first: &str,
    refused: (StatusCode, &'static str),
) -> Response {
    let recorded = auth.webhook_failures().lock().record_failure(peer, &WEBHOOK_FAILURES, Instant::now());
    let bucket = limiter_bucket(peer.ip);
    if let Some(lockout) = recorded.lockout {
        tracing::warn!(%account, %bucket, lockout_ms = lockout.as_millis() as u64, "{locked}");
        return throttled(lockout);
    }
    if recorded.first_in_window {
        tracing::warn!(%account, %bucket, "{first}");
    } else {
        tracing::debug!(%account, %bucket, "{first}");
    }
    refused.into_response()
}

fn throttled(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    (StatusCode::TOO_MANY_REQUESTS, [(axum::http::header::RETRY_AFTER, secs.to_string())], "too many requests")
        .into_response()
}
