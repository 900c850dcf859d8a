//! Retrying a model call that failed before it answered.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::error::LlmError;
use crate::provider::{EventStream, Provider};
use crate::types::{ChatRequest, StreamEvent};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time.
    pub base: Duration,
    /// Longest wait between attempts. A provider asking (via `Retry-After`) for longer than this
    /// gets its error passed to the caller instead: better to tell the user than to sit silent.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, base: Duration::from_millis(500), cap: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The backoff after `failures` failed attempts (1 for the first retry): the workspace's one
    /// policy ([`clawgate_backoff::Backoff`]), `base` doubling up to `cap` with equal jitter, so
    /// that gateways rate-limited together do not come back together.
    pub fn backoff(&self, failures: u32) -> Duration {
        clawgate_backoff::Backoff::new(self.base, self.cap).delay(failures.saturating_sub(1))
    }

    /// How long to wait before retrying after `error`, or `None` to give up. Honours the
    /// provider's `Retry-After` when it gave one.
    pub fn delay_after(&self, failures: u32, error: &LlmError) -> Option<Duration> {
        if failures >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.cap => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(failures)),
        }
    }
}

/// Calls `provider`, retrying per `policy` while the call fails **before its first event**. Once
/// an event has been yielded the stream is passed through untouched, errors included: replaying a
/// half-streamed answer would duplicate text the user already saw. Cancelling `cancel` also cuts
/// a backoff short.
pub fn stream_with_retry(
    provider: Arc<dyn Provider>,
    request: ChatRequest,
    cancel: CancellationToken,
    policy: RetryPolicy,
) -> EventStream {
    let state = Retrying { provider, request, cancel, policy, failures: 0, current: None, yielded: false, done: false };
    futures_util::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

struct Retrying {
    provider: Arc<dyn Provider>,
    request: ChatRequest,
    cancel: CancellationToken,
    policy: RetryPolicy,
    failures: u32,
    current: Option<EventStream>,
    /// An event reached the caller: from here on, no retry.
    yielded: bool,
    done: bool,
}

impl Retrying {
    async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if self.done {
                return None;
            }
            let stream =
                self.current.get_or_insert_with(|| self.provider.stream_ref(&self.request, self.cancel.clone()));
            match stream.next().await {
                Some(Ok(event)) => {
                    self.yielded = true;
                    return Some(Ok(event));
                }
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(error)) => {
                    self.failures += 1;
                    let delay = if self.yielded { None } else { self.policy.delay_after(self.failures, &error) };
                    let Some(delay) = delay else {
                        self.done = true;
                        return Some(Err(error));
                    };
                    tracing::warn!(
                        provider = self.provider.id(),
                        attempt = self.failures,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "model call failed before answering; retrying"
                    );
                    self.current = None;
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => {
                            self.done = true;
                            return Some(Err(LlmError::Cancelled));
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_unless_longer_than_the_cap() {
        let policy = RetryPolicy { max_attempts: 3, base: Duration::from_millis(100), cap: Duration::from_secs(10) };
        let limited =
            |secs| LlmError::RateLimited { retry_after: Some(Duration::from_secs(secs)), message: String::new() };
        assert_eq!(policy.delay_after(1, &limited(4)), Some(Duration::from_secs(4)));
        assert_eq!(policy.delay_after(1, &limited(60)), None);
        assert_eq!(policy.delay_after(3, &limited(1)), None, "attempts exhausted");
        assert_eq!(policy.delay_after(1, &LlmError::ContextOverflow { message: String::new() }), None);
    }
}
