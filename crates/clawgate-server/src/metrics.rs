//! `GET /metrics`: the gateway's Prometheus series on the gateway port, behind the same bearer
//! check as the HTTP API (the gateway token or password; failures count in the shared
//! failed-auth limiter). The series themselves live in `clawgate_core::metrics`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use clawgate_core::channels::ChannelService;
use clawgate_core::comfy::ComfyService;
use clawgate_core::gateway::Store;
use clawgate_core::handshake::AuthService;
use clawgate_core::metrics::{Metrics, scrape};

use crate::http_api::auth::{self, Denied};

/// What a scrape reads: the registry, and the state its scrape-time gauges are computed from.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    pub(crate) metrics: Metrics,
    /// The bearer check.
    pub(crate) auth: AuthService,
    /// Outbox depth.
    pub(crate) store: Store,
    /// The running channel accounts (a channel with an empty outbox still shows 0).
    pub(crate) channels: ChannelService,
    /// ComfyUI workers' queues.
    pub(crate) comfy: ComfyService,
}

/// `GET /metrics` — Prometheus text format 0.0.4, or OpenMetrics when `Accept` asks for it.
pub(crate) async fn get_metrics(State(s): State<Scrape>, req: Request) -> Response {
    let ip = crate::http_api::client_ip(&req);
    match auth::check(&s.auth, req.headers(), ip).await {
        Ok(()) => {}
        Err(Denied::Unauthorized) => {
            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        Err(Denied::RateLimited(wait)) => {
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            return r;
        }
    }
    let openmetrics = wants_openmetrics(req.headers().get(header::ACCEPT));
    let (body, content_type) = scrape(&s.metrics, &s.store, &s.channels, &s.comfy, openmetrics).await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// `GET /metrics` on the separate loopback listener (`gateway.metrics.listen`): no bearer, as
/// the config refuses any address but loopback for it.
pub(crate) async fn get_metrics_local(State(s): State<Scrape>, req: Request) -> Response {
    let openmetrics = wants_openmetrics(req.headers().get(header::ACCEPT));
    let (body, content_type) = scrape(&s.metrics, &s.store, &s.channels, &s.comfy, openmetrics).await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text).into_response()
}

/// Whether the scraper prefers OpenMetrics (Prometheus sends it first in `Accept` when it
/// supports it).
fn wants_openmetrics(accept: Option<&HeaderValue>) -> bool {
    accept.and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static("text/plain"))));
        let prom = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(&HeaderValue::from_static(prom))));
    }
}
