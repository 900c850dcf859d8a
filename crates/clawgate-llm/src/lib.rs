//! LLM provider clients for clawgate.
//!
//! This crate owns everything between the agent runtime and a model server: the normalised
//! request ([`ChatRequest`]) and stream ([`StreamEvent`]) types, the [`Provider`] trait, clients for
//! OpenAI-compatible Chat Completions ([`OpenAiCompatible`]: OpenAI, Ollama, vLLM, llama.cpp,
//! LM Studio) and Anthropic Messages ([`Anthropic`]), their SSE parser ([`sse`]), error
//! classification by what the caller can do ([`LlmError`]), a retry policy that never replays a
//! half-streamed answer ([`stream_with_retry`]), and the provider registry built from OpenClaw-shaped
//! `models.providers` config ([`ProviderRegistry`]). It does no I/O besides HTTP to the provider: it
//! reads no files and no environment (secrets arrive resolved), it stores nothing, and it never
//! logs an API key.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use clawgate_llm::{CancellationToken, ChatMessage, ChatRequest, ModelRef, ProviderRegistry, collect};
//!
//! let registry = ProviderRegistry::from_config(&serde_json::json!({}))?;
//! let model = ModelRef::parse("ollama/llama3.2")?;
//! let provider = registry.get(&model.provider).ok_or("unknown provider")?;
//! let request = ChatRequest::new(model.model, vec![ChatMessage::user("Say hello")]);
//! let answer = collect(provider.stream(request, CancellationToken::new())).await?;
//! println!("{}", answer.text);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod accumulate;
mod anthropic;
mod config;
mod error;
mod http;
mod openai;
mod provider;
mod registry;
mod retry;
pub mod sse;
mod types;

pub use accumulate::{ChatResponse, StreamAccumulator, collect};
pub use anthropic::{ANTHROPIC_VERSION, Anthropic};
pub use config::{
    Api, ConfigError, MaxTokensField, ModelCompat, ModelInfo, ModelRef, OLLAMA_DEFAULT_BASE_URL, OLLAMA_PROVIDER_ID,
    ProviderConfig,
};
pub use error::{BoxError, LlmError, TimeoutPhase};
pub use openai::OpenAiCompatible;
pub use provider::{EventStream, Provider, RemoteModel, Timeouts};
pub use registry::{ProviderRegistry, build_provider};
pub use retry::{RetryPolicy, stream_with_retry};
/// Re-exported so callers need not depend on `tokio-util` to cancel a call.
pub use tokio_util::sync::CancellationToken;
pub use types::{ChatMessage, ChatRequest, StopReason, StreamEvent, ToolCall, ToolSpec, Usage};
