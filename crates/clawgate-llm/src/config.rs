//! Provider configuration, read from OpenClaw-shaped `models.providers.<id>` JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::provider::Timeouts;

/// The id of the built-in local provider.
pub const OLLAMA_PROVIDER_ID: &str = "ollama";
/// Where Ollama's OpenAI-compatible API listens by default.
pub const OLLAMA_DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// A provider entry that cannot be used, named by its config path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The config key, e.g. `models.providers.openai.baseUrl`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(provider: &str, key: &str, message: impl Into<String>) -> Self {
        let path = if key.is_empty() {
            format!("models.providers.{provider}")
        } else {
            format!("models.providers.{provider}.{key}")
        };
        Self { path, message: message.into() }
    }
}

/// Which wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI Chat Completions (`"openai-completions"`).
    OpenAiCompletions,
    /// Anthropic Messages (`"anthropic-messages"`).
    AnthropicMessages,
}

impl Api {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAiCompletions => "openai-completions",
            Self::AnthropicMessages => "anthropic-messages",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which request field carries the output token limit. OpenAI's reasoning models refuse the old
/// `max_tokens`; several local servers only know `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens`.
    MaxTokens,
    /// `max_completion_tokens`.
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The JSON field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// Per-model quirks of an OpenAI-compatible server (`models[].compat`, as in OpenClaw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelCompat {
    /// `compat.maxTokensField`. Unset: `max_completion_tokens` for api.openai.com, else
    /// `max_tokens`.
    pub max_tokens_field: Option<MaxTokensField>,
    /// `compat.supportsUsageInStreaming`; `false` stops us sending `stream_options`, which a few
    /// old servers reject. Unset means supported.
    pub supports_usage_in_streaming: Option<bool>,
}

/// A model the config declares for a provider.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// The provider's model id.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// Context window in tokens, if declared.
    pub context_window: Option<u32>,
    /// Output token limit; sent when a request sets none.
    pub max_tokens: Option<u32>,
    /// Input kinds (`"text"`, `"image"`).
    pub input: Vec<String>,
    /// Whether it is a reasoning model.
    pub reasoning: bool,
    /// Extra headers for requests to this model.
    pub headers: BTreeMap<String, String>,
    /// Wire quirks.
    pub compat: ModelCompat,
}

/// One configured provider. Secrets (`apiKey`, header values) are already resolved to plain
/// strings by the caller; `Debug` never prints them.
#[derive(Clone, PartialEq)]
pub struct ProviderConfig {
    /// The provider id (the key under `models.providers`).
    pub id: String,
    /// API root, e.g. `http://127.0.0.1:11434/v1` or `https://api.anthropic.com`.
    pub base_url: String,
    /// API key, if the server needs one.
    pub api_key: Option<String>,
    /// Wire API.
    pub api: Api,
    /// Extra headers on every request.
    pub headers: BTreeMap<String, String>,
    /// `authHeader`: `false` stops an OpenAI-compatible client from sending `Authorization`;
    /// `true` makes the Anthropic client send `Authorization: Bearer` instead of `x-api-key`.
    pub auth_header: Option<bool>,
    /// Declared models.
    pub models: Vec<ModelInfo>,
    /// Connect / first-byte / idle limits (not read from JSON: the caller sets them).
    pub timeouts: Timeouts,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("api", &self.api)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth_header", &self.auth_header)
            .field("models", &self.models)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl ProviderConfig {
    /// A provider with no key, headers or declared models.
    pub fn new(id: impl Into<String>, base_url: impl Into<String>, api: Api) -> Self {
        Self {
            id: id.into(),
            base_url: base_url.into(),
            api_key: None,
            api,
            headers: BTreeMap::new(),
            auth_header: None,
            models: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// The built-in local Ollama at its default address: OpenAI-compatible, no key.
    pub fn ollama_default() -> Self {
        Self::new(OLLAMA_PROVIDER_ID, OLLAMA_DEFAULT_BASE_URL, Api::OpenAiCompletions)
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The declared model with this id.
    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Reads `models.providers.<id>`: `{baseUrl, apiKey?, api?, headers?, authHeader?, models?}`.
    ///
    /// - `api` defaults to `anthropic-messages` for the provider id `anthropic` and to
    ///   `openai-completions` otherwise. OpenClaw's `"ollama"` (native Ollama API) is served through
    ///   Ollama's OpenAI-compatible endpoint: `/v1` is appended to the base URL if missing.
    /// - `baseUrl` may be left out only for the provider `ollama`.
    /// - Keys this crate does not use (`cost`, `auth`, other `compat` flags) are ignored.
    pub fn from_json(id: &str, value: &Value) -> Result<Self, ConfigError> {
        let err = |key: &str, message: &str| ConfigError::new(id, key, message);
        let object = value.as_object().ok_or_else(|| err("", "must be an object"))?;

        let api_text = match object.get("api") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(err("api", "must be a string")),
        };
        let (api, native_ollama) = match api_text {
            None if id == "anthropic" => (Api::AnthropicMessages, false),
            None | Some("openai-completions") => (Api::OpenAiCompletions, false),
            Some("anthropic-messages") => (Api::AnthropicMessages, false),
            Some("ollama") => (Api::OpenAiCompletions, true),
            Some(other) => {
                return Err(err(
                    "api",
                    &format!(
                        "`{other}` is not supported; use \"openai-completions\" (OpenAI, Ollama, vLLM, llama.cpp, \
                         LM Studio) or \"anthropic-messages\""
                    ),
                ));
            }
        };

        let mut base_url = match object.get("baseUrl") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            None | Some(Value::Null) if id == OLLAMA_PROVIDER_ID => OLLAMA_DEFAULT_BASE_URL.to_owned(),
            None | Some(Value::Null) => return Err(err("baseUrl", "is required")),
            Some(_) => return Err(err("baseUrl", "must be a non-empty string")),
        };
        if native_ollama && !base_url.trim_end_matches('/').ends_with("/v1") {
            base_url = format!("{}/v1", base_url.trim_end_matches('/'));
        }
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(_) => return Err(err("baseUrl", "must be an http:// or https:// URL")),
            Err(e) => return Err(err("baseUrl", &format!("is not a valid URL: {e}"))),
        }

        let api_key = match object.get("apiKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(err("apiKey", "must be a string (resolve secret references before building providers)"));
            }
        };
        let auth_header = match object.get("authHeader") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(err("authHeader", "must be true or false")),
        };
        let headers = string_map(object.get("headers")).map_err(|m| err("headers", m))?;

        let models = match object.get("models") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| model_from_json(item).map_err(|(key, m)| err(&format!("models[{i}]{key}"), &m)))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("models", "must be an array")),
        };

        Ok(Self {
            id: id.to_owned(),
            base_url,
            api_key,
            api,
            headers,
            auth_header,
            models,
            timeouts: Timeouts::default(),
        })
    }
}

fn string_map(value: Option<&Value>) -> Result<BTreeMap<String, String>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err("values must be strings (resolve secret references first)"),
            })
            .collect(),
        Some(_) => Err("must be an object of strings"),
    }
}

/// Reads one `models[]` entry; errors carry the key suffix (`.id`) and a message.
fn model_from_json(value: &Value) -> Result<ModelInfo, (String, String)> {
    let bad = |key: &str, message: &str| (format!(".{key}"), message.to_owned());
    let object = value.as_object().ok_or_else(|| (String::new(), "must be an object".to_owned()))?;
    let id = match object.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("id", "is required and must be a non-empty string")),
    };
    let name = object.get("name").and_then(Value::as_str).map_or_else(|| id.clone(), str::to_owned);
    let count = |key: &str| -> Result<Option<u32>, (String, String)> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(key, "must be a positive whole number")),
        }
    };
    let context_window = count("contextWindow")?;
    let max_tokens = count("maxTokens")?;
    let input = match object.get("input") {
        None | Some(Value::Null) => vec!["text".to_owned()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| bad("input", "must be an array of strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("input", "must be an array of strings")),
    };
    let reasoning = match object.get("reasoning") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("reasoning", "must be true or false")),
    };
    let headers = string_map(object.get("headers")).map_err(|m| bad("headers", m))?;
    let compat = object.get("compat");
    let max_tokens_field = match compat.and_then(|c| c.get("maxTokensField")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "max_tokens" => Some(MaxTokensField::MaxTokens),
        Some(Value::String(s)) if s == "max_completion_tokens" => Some(MaxTokensField::MaxCompletionTokens),
        Some(_) => return Err(bad("compat.maxTokensField", "must be \"max_tokens\" or \"max_completion_tokens\"")),
    };
    let supports_usage_in_streaming = compat.and_then(|c| c.get("supportsUsageInStreaming")).and_then(Value::as_bool);
    Ok(ModelInfo {
        id,
        name,
        context_window,
        max_tokens,
        input,
        reasoning,
        headers,
        compat: ModelCompat { max_tokens_field, supports_usage_in_streaming },
    })
}

/// `provider/model`, as in `agents.defaults.model.primary: "ollama/llama3.2"`. The model part may
/// itself contain `/` (`openrouter/meta-llama/llama-3.1-8b`): only the first `/` splits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The provider id.
    pub provider: String,
    /// The provider's model id.
    pub model: String,
}

impl ModelRef {
    /// Parses `provider/model`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError {
            path: "model".into(),
            message: format!("`{text}` is not a model reference; write it as provider/model, e.g. ollama/llama3.2"),
        };
        let (provider, model) = text.trim().split_once('/').ok_or_else(invalid)?;
        if provider.is_empty() || model.is_empty() {
            return Err(invalid());
        }
        Ok(Self { provider: provider.to_owned(), model: model.to_owned() })
    }
}

impl FromStr for ModelRef {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openclaw_provider_entry_is_read() {
        let value = json!({
            "baseUrl": "http://127.0.0.1:28791/v1", "apiKey": "fake-key", "api": "openai-completions",
            "headers": {"X-Team": "a"},
            "models": [{"id": "fake-model", "name": "Fake Model", "reasoning": false, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000, "maxTokens": 4096,
                        "compat": {"maxTokensField": "max_completion_tokens"}}]
        });
        let config = ProviderConfig::from_json("fake", &value).expect("valid");
        assert_eq!(config.base_url, "http://127.0.0.1:28791/v1");
        assert_eq!(config.api, Api::OpenAiCompletions);
        assert_eq!(config.api_key.as_deref(), Some("fake-key"));
        assert_eq!(config.headers.get("X-Team").map(String::as_str), Some("a"));
        let model = config.model("fake-model").expect("declared");
        assert_eq!(model.name, "Fake Model");
        assert_eq!(model.context_window, Some(128_000));
        assert_eq!(model.max_tokens, Some(4096));
        assert_eq!(model.compat.max_tokens_field, Some(MaxTokensField::MaxCompletionTokens));
    }

    #[test]
    fn debug_output_hides_the_key_and_header_values() {
        let value = json!({"baseUrl": "https://api.example.com/v1", "apiKey": "sk-very-secret",
                           "headers": {"X-Api-Token": "header-secret"}});
        let config = ProviderConfig::from_json("x", &value).expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert!(!debug.contains("header-secret"), "{debug}");
    }

    #[test]
    fn api_defaults_follow_the_provider_id() {
        let anthropic = ProviderConfig::from_json("anthropic", &json!({"baseUrl": "https://api.anthropic.com"}));
        assert_eq!(anthropic.expect("valid").api, Api::AnthropicMessages);
        let native = ProviderConfig::from_json("local", &json!({"baseUrl": "http://box:11434", "api": "ollama"}));
        let native = native.expect("valid");
        assert_eq!((native.api, native.base_url.as_str()), (Api::OpenAiCompletions, "http://box:11434/v1"));
        let ollama = ProviderConfig::from_json("ollama", &json!({})).expect("valid");
        assert_eq!(ollama.base_url, OLLAMA_DEFAULT_BASE_URL);
    }

    #[test]
    fn bad_entries_name_the_offending_key() {
        let cases = [
            (json!({}), "models.providers.p.baseUrl"),
            (json!({"baseUrl": "ftp://x"}), "models.providers.p.baseUrl"),
            (json!({"baseUrl": "http://x", "api": "google-generative-ai"}), "models.providers.p.api"),
            (json!({"baseUrl": "http://x", "apiKey": {"env": "KEY"}}), "models.providers.p.apiKey"),
            (json!({"baseUrl": "http://x", "models": [{"name": "no id"}]}), "models.providers.p.models[0].id"),
            (
                json!({"baseUrl": "http://x", "models": [{"id": "m", "maxTokens": -1}]}),
                "models.providers.p.models[0].maxTokens",
            ),
        ];
        for (value, path) in cases {
            let err = ProviderConfig::from_json("p", &value).expect_err("invalid");
            assert_eq!(err.path, path, "{value}");
        }
    }

    #[test]
    fn model_refs_split_at_the_first_slash() {
        let r = ModelRef::parse("openrouter/meta-llama/llama-3.1-8b").expect("valid");
        assert_eq!((r.provider.as_str(), r.model.as_str()), ("openrouter", "meta-llama/llama-3.1-8b"));
        assert_eq!(r.to_string(), "openrouter/meta-llama/llama-3.1-8b");
        assert!(ModelRef::parse("llama3").is_err());
        assert!(ModelRef::parse("/x").is_err());
        assert!(ModelRef::parse("x/").is_err());
    }
}
