//! The provider abstraction the agent runtime calls.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::error::LlmError;
use crate::types::{ChatRequest, StreamEvent};

/// A streamed answer: see [`StreamEvent`] for the order events come in. It ends after `Finish` or
/// after the first `Err`. Dropping it aborts the HTTP request.
pub type EventStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// An LLM API the gateway can call. Implementations are cheap to share (`Arc<dyn Provider>`) and
/// hold a connection pool. Their `Debug` output never contains credentials.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider id from the config (`ollama`, `openai`, …).
    fn id(&self) -> &str;

    /// Starts a streamed chat call. Nothing is sent until the stream is first polled. Cancelling
    /// `cancel` (or dropping the stream) aborts the request; the stream then ends with
    /// [`LlmError::Cancelled`].
    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> EventStream;

    /// [`Provider::stream`] from a borrowed request. Retries call this, so a request that may be
    /// sent again (a 20 MB prompt) is not copied for each attempt; providers that build their
    /// HTTP body from a borrow override it.
    fn stream_ref(&self, request: &ChatRequest, cancel: CancellationToken) -> EventStream {
        self.stream(request.clone(), cancel)
    }

    /// The models the server offers right now (`GET …/models`), for `clawgate doctor` and model
    /// pickers.
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<RemoteModel>, LlmError>>;
}

/// A model as listed by the provider itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteModel {
    /// The id to put in [`ChatRequest::model`].
    pub id: String,
    /// A display name, when the provider gives one (Anthropic does).
    pub display_name: Option<String>,
    /// The owner, when the provider gives one (OpenAI-compatible servers do).
    pub owned_by: Option<String>,
}

/// How long each phase of a call may take.
///
/// The defaults are generous on purpose: a local model may chew on a long prompt for minutes
/// before its first token, and reasoning models can go quiet mid-answer. A dead server is still
/// found by `connect`, and a hung one by `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the first byte of the answer's body (headers included).
    pub first_byte: Duration,
    /// Longest silence between two chunks once the answer has started. Comments and `ping`
    /// events count as activity.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(10), first_byte: Duration::from_secs(300), idle: Duration::from_secs(180) }
    }
}
