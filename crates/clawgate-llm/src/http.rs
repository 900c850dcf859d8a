//! What both provider clients share: sending a request with the configured timeouts, turning HTTP
//! failures into [`LlmError`]s, and driving an SSE body through a provider-specific decoder.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ProviderConfig};
use crate::error::{LlmError, Redactor, TimeoutPhase, classify_status, parse_retry_after};
use crate::provider::{EventStream, Timeouts};
use crate::sse::{SseEvent, SseParser};
use crate::types::StreamEvent;

/// What every client builds from its config before its own additions (auth headers).
pub(crate) struct Prepared {
    pub(crate) ctx: HttpContext,
    pub(crate) base_url: reqwest::Url,
    /// The config's extra headers, validated and marked sensitive (they may hold secrets).
    pub(crate) headers: HeaderMap,
}

pub(crate) fn prepare(config: &ProviderConfig) -> Result<Prepared, ConfigError> {
    let base_url = reqwest::Url::parse(&config.base_url)
        .map_err(|e| ConfigError::new(&config.id, "baseUrl", format!("is not a valid URL: {e}")))?;
    let headers = header_map(&config.id, "headers", &config.headers)?;
    let secrets = config
        .api_key
        .iter()
        .chain(config.headers.values())
        .chain(config.models.iter().flat_map(|m| m.headers.values()))
        .cloned();
    let ctx = HttpContext::new(&config.id, &base_url, config.timeouts, Redactor::new(secrets))
        .map_err(|m| ConfigError::new(&config.id, "", m))?;
    Ok(Prepared { ctx, base_url, headers })
}

/// `models[].headers`, per model id.
pub(crate) fn model_headers(config: &ProviderConfig) -> Result<BTreeMap<String, HeaderMap>, ConfigError> {
    config
        .models
        .iter()
        .filter(|m| !m.headers.is_empty())
        .map(|m| Ok((m.id.clone(), header_map(&config.id, &format!("models.{}.headers", m.id), &m.headers)?)))
        .collect()
}

fn header_map(provider: &str, key: &str, headers: &BTreeMap<String, String>) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(provider, key, format!("`{name}` is not a valid header name")))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(provider, key, format!("the value of `{name}` is not a valid header value"))
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Enough of an error body to diagnose; a hostile server cannot make us buffer more.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Bound for whole (non-streamed) JSON answers: model lists and non-streaming completions.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Per-provider HTTP state, cloned into every request's stream.
#[derive(Debug, Clone)]
pub(crate) struct HttpContext {
    /// Built on the first request, not with the config: building a client loads and parses the
    /// system's root certificates (about half of the gateway's start-up work and a share of its
    /// idle memory), and a gateway whose default provider is never called, or that only
    /// validates a config, needs none of it. Clones share the one client.
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    pub(crate) provider: String,
    /// The base URL without credentials or query, safe for messages and logs.
    pub(crate) base_url_display: String,
    pub(crate) timeouts: Timeouts,
    pub(crate) redactor: Redactor,
}

impl HttpContext {
    pub(crate) fn new(
        provider: &str,
        base_url: &reqwest::Url,
        timeouts: Timeouts,
        redactor: Redactor,
    ) -> Result<Self, String> {
        Ok(Self {
            client: Arc::default(),
            provider: provider.to_owned(),
            base_url_display: display_url(base_url),
            timeouts,
            redactor,
        })
    }

    /// The provider's HTTP client, built on first use.
    pub(crate) fn client(&self) -> Result<&reqwest::Client, LlmError> {
        let built = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.timeouts.connect)
                .user_agent(concat!("clawgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", innermost_cause(&e)))
        });
        built.as_ref().map_err(|message| LlmError::Upstream { status: None, message: message.clone() })
    }

    /// Maps a transport failure (no HTTP status) to an error.
    fn transport_error(&self, error: reqwest::Error) -> LlmError {
        let detail = self.redactor.clean(&innermost_cause(&error));
        if error.is_connect() && error.is_timeout() {
            LlmError::Timeout { phase: TimeoutPhase::Connect, after: self.timeouts.connect }
        } else if error.is_connect() {
            LlmError::Connect {
                provider: self.provider.clone(),
                base_url: self.base_url_display.clone(),
                detail,
                source: Box::new(error.without_url()),
            }
        } else {
            LlmError::Upstream { status: None, message: format!("the request to the provider failed: {detail}") }
        }
    }

    /// Sends `request` and returns the response if its status is a success; otherwise reads a
    /// bounded piece of the body and classifies the failure. No timeout here: callers bound it.
    async fn send_checked(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, LlmError> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after =
            parse_retry_after(header("retry-after-ms").as_deref(), header("retry-after").as_deref(), SystemTime::now());
        // A body we cannot read still leaves the status to classify by.
        let body = read_limited(response, MAX_ERROR_BODY).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        tracing::debug!(provider = %self.provider, status = status.as_u16(), "provider answered with an error status");
        Err(classify_status(status.as_u16(), retry_after, &body, &self.redactor))
    }

    /// A plain JSON request/response (model listing), bounded by the first-byte timeout.
    pub(crate) async fn fetch_json(&self, request: reqwest::RequestBuilder) -> Result<Value, LlmError> {
        let limit = self.timeouts.first_byte;
        let fetch = async {
            let response = self.send_checked(request).await?;
            let body = read_limited(response, MAX_JSON_BODY).await.map_err(|e| self.transport_error(e))?;
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| LlmError::Protocol { message: format!("the answer is not JSON: {e}") })
        };
        tokio::time::timeout(limit, fetch)
            .await
            .unwrap_or(Err(LlmError::Timeout { phase: TimeoutPhase::FirstByte, after: limit }))
    }
}

/// The provider-specific half of a streamed call: reads SSE events, emits normalised events.
pub(crate) trait Decoder: Send + 'static {
    /// Handles one SSE event. Returns `Ok(true)` once the answer is complete, after pushing the
    /// closing events (`Usage`, `Finish`).
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError>;

    /// The body ended without the decoder saying the answer was complete: push the closing events
    /// if the answer is complete enough, or fail.
    fn end_of_body(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), LlmError>;

    /// The server ignored `stream: true` and sent one JSON document instead.
    fn whole_json(&mut self, _body: Value, _out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        Err(LlmError::Protocol { message: "expected an event stream but got a JSON document".into() })
    }
}

/// Starts `request` lazily and turns its SSE body into normalised events.
pub(crate) fn event_stream<D: Decoder>(
    ctx: HttpContext,
    request: reqwest::RequestBuilder,
    decoder: D,
    cancel: CancellationToken,
) -> EventStream {
    let driver = Driver {
        ctx,
        phase: Phase::NotSent(Box::new(request)),
        decoder,
        parser: SseParser::new(),
        queue: VecDeque::new(),
        cancel,
        ended: false,
    };
    futures_util::stream::unfold(driver, |mut driver| async move {
        let item = driver.next().await?;
        Some((item, driver))
    })
    .boxed()
}

enum Phase {
    /// Boxed: a request builder is large and this phase is left after the first poll.
    NotSent(Box<reqwest::RequestBuilder>),
    Body {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        /// When the first byte must have arrived by (set when the request was sent).
        first_byte_deadline: Instant,
        started: bool,
    },
    /// Nothing more to read: the answer is complete, failed, or was cancelled.
    Done,
}

struct Driver<D> {
    ctx: HttpContext,
    phase: Phase,
    decoder: D,
    parser: SseParser,
    /// Decoded items not yet handed out; a single chunk can carry many events.
    queue: VecDeque<Result<StreamEvent, LlmError>>,
    cancel: CancellationToken,
    /// The terminal item (`Finish` or an error) has been handed out.
    ended: bool,
}

impl<D: Decoder> Driver<D> {
    async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if self.ended {
                return None;
            }
            if self.cancel.is_cancelled() {
                return Some(self.fail(LlmError::Cancelled));
            }
            if let Some(item) = self.queue.pop_front() {
                self.ended = matches!(item, Err(_) | Ok(StreamEvent::Finish { .. }));
                return Some(item);
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::NotSent(request) => {
                    let first_byte = self.ctx.timeouts.first_byte;
                    let deadline = Instant::now() + first_byte;
                    tracing::debug!(provider = %self.ctx.provider, "sending model request");
                    let sent = tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => Err(LlmError::Cancelled),
                        sent = tokio::time::timeout_at(deadline, self.ctx.send_checked(*request)) => sent
                            .unwrap_or(Err(LlmError::Timeout { phase: TimeoutPhase::FirstByte, after: first_byte })),
                    };
                    let response = match sent {
                        Ok(response) => response,
                        Err(e) => return Some(self.fail(e)),
                    };
                    if is_json(&response) {
                        let read = tokio::select! {
                            biased;
                            () = self.cancel.cancelled() => Err(LlmError::Cancelled),
                            read = tokio::time::timeout_at(deadline, read_limited(response, MAX_JSON_BODY)) => match read {
                                Ok(Ok(body)) => Ok(body),
                                Ok(Err(e)) => Err(self.ctx.transport_error(e)),
                                Err(_) => Err(LlmError::Timeout { phase: TimeoutPhase::FirstByte, after: first_byte }),
                            },
                        };
                        match read {
                            Ok(body) => self.whole_json(&body),
                            Err(e) => return Some(self.fail(e)),
                        }
                    } else {
                        self.phase = Phase::Body {
                            body: response.bytes_stream().boxed(),
                            first_byte_deadline: deadline,
                            started: false,
                        };
                    }
                }
                Phase::Body { mut body, first_byte_deadline, started } => {
                    let (wait_until, phase, after) = if started {
                        (Instant::now() + self.ctx.timeouts.idle, TimeoutPhase::Idle, self.ctx.timeouts.idle)
                    } else {
                        (first_byte_deadline, TimeoutPhase::FirstByte, self.ctx.timeouts.first_byte)
                    };
                    let chunk = tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return Some(self.fail(LlmError::Cancelled)),
                        chunk = tokio::time::timeout_at(wait_until, body.next()) => chunk,
                    };
                    match chunk {
                        Err(_) => return Some(self.fail(LlmError::Timeout { phase, after })),
                        Ok(Some(Ok(bytes))) => {
                            self.phase = Phase::Body { body, first_byte_deadline, started: true };
                            self.feed(&bytes);
                        }
                        Ok(Some(Err(e))) => {
                            let detail = self.ctx.redactor.clean(&innermost_cause(&e));
                            let message = format!("the connection broke in the middle of the answer: {detail}");
                            return Some(self.fail(LlmError::Upstream { status: None, message }));
                        }
                        Ok(None) => self.end_of_body(),
                    }
                }
                Phase::Done => {
                    // Decoders always queue a terminal item; this only guards against one that
                    // did not, so the caller never waits on a stream that silently stopped.
                    return Some(
                        self.fail(LlmError::Protocol { message: "the answer ended without a finish reason".into() }),
                    );
                }
            }
        }
    }

    fn fail(&mut self, error: LlmError) -> Result<StreamEvent, LlmError> {
        tracing::debug!(provider = %self.ctx.provider, error = %error, "model stream failed");
        self.phase = Phase::Done;
        self.queue.clear();
        self.ended = true;
        Err(error)
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut events = Vec::new();
        let parsed = self.parser.push(bytes, &mut events);
        let mut out = Vec::new();
        for event in events {
            match self.decoder.event(event, &mut out) {
                Ok(false) => {}
                Ok(true) => {
                    self.queue.extend(out.drain(..).map(Ok));
                    self.phase = Phase::Done;
                    return;
                }
                Err(e) => {
                    self.queue.extend(out.drain(..).map(Ok));
                    self.queue.push_back(Err(e));
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
        self.queue.extend(out.into_iter().map(Ok));
        if let Err(e) = parsed {
            self.queue.push_back(Err(LlmError::Protocol { message: e.to_string() }));
            self.phase = Phase::Done;
        }
    }

    fn end_of_body(&mut self) {
        let mut events = Vec::new();
        // `finish` cannot exceed the bound: it only flushes what `push` already accepted.
        let _ = self.parser.finish(&mut events);
        let mut out = Vec::new();
        for event in events {
            match self.decoder.event(event, &mut out) {
                Ok(false) => {}
                Ok(true) => {
                    self.queue.extend(out.into_iter().map(Ok));
                    return;
                }
                Err(e) => {
                    self.queue.extend(out.into_iter().map(Ok));
                    self.queue.push_back(Err(e));
                    return;
                }
            }
        }
        let ended = self.decoder.end_of_body(&mut out);
        self.queue.extend(out.into_iter().map(Ok));
        if let Err(e) = ended {
            self.queue.push_back(Err(e));
        }
    }

    fn whole_json(&mut self, body: &[u8]) {
        let mut out = Vec::new();
        let decoded = match serde_json::from_slice::<Value>(body) {
            Ok(value) => self.decoder.whole_json(value, &mut out),
            Err(e) => Err(LlmError::Protocol { message: format!("the answer is not valid JSON: {e}") }),
        };
        self.queue.extend(out.into_iter().map(Ok));
        if let Err(e) = decoded {
            self.queue.push_back(Err(e));
        }
    }
}

fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// Reads at most `limit` bytes of a body (the rest is dropped with the connection).
async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The deepest cause in an error chain ("Connection refused (os error 111)"), which is what a user
/// can act on; reqwest's own top-level text is generic.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// A URL fit for messages: no user info, no query (where some deployments put keys).
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none to strip.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.as_str().trim_end_matches('/').to_owned()
}

/// Joins a base URL and a path the way users expect: `http://h/v1` + `chat/completions` is
/// `http://h/v1/chat/completions` whether or not the base ends in `/`.
pub(crate) fn join_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_or_without_trailing_slash() {
        let a = reqwest::Url::parse("http://127.0.0.1:11434/v1").expect("valid");
        let b = reqwest::Url::parse("http://127.0.0.1:11434/v1/").expect("valid");
        assert_eq!(join_url(&a, "chat/completions").as_str(), "http://127.0.0.1:11434/v1/chat/completions");
        assert_eq!(join_url(&b, "/chat/completions").as_str(), "http://127.0.0.1:11434/v1/chat/completions");
        let root = reqwest::Url::parse("https://api.anthropic.com").expect("valid");
        assert_eq!(join_url(&root, "v1/messages").as_str(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn displayed_urls_lose_credentials_and_query() {
        let url = reqwest::Url::parse("https://user:pw@example.com/v1/?api-key=secret").expect("valid");
        assert_eq!(display_url(&url), "https://example.com/v1");
    }
}
