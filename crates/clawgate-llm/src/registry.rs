//! The set of configured providers, looked up by id.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::anthropic::Anthropic;
use crate::config::{Api, ConfigError, ModelInfo, ModelRef, OLLAMA_PROVIDER_ID, ProviderConfig};
use crate::openai::OpenAiCompatible;
use crate::provider::Provider;

/// Builds the client for one provider config.
pub fn build_provider(config: ProviderConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(match config.api {
        Api::OpenAiCompletions => Arc::new(OpenAiCompatible::new(config)?),
        Api::AnthropicMessages => Arc::new(Anthropic::new(config)?),
    })
}

struct Entry {
    config: ProviderConfig,
    provider: Arc<dyn Provider>,
}

/// Every provider the gateway can call: those under `models.providers`, plus a built-in `ollama`
/// at `http://127.0.0.1:11434/v1` unless the config defines its own.
pub struct ProviderRegistry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(id, e)| (id, &e.config))).finish()
    }
}

impl ProviderRegistry {
    /// Reads `models.providers` from the **root** of an OpenClaw-shaped config whose secrets are
    /// already resolved. A missing `models` section is fine (only the built-in Ollama is there);
    /// an unusable entry is an error naming its key.
    pub fn from_config(root: &Value) -> Result<Self, String> {
        let providers = match root.get("models").and_then(|m| m.get("providers")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(id, value)| ProviderConfig::from_json(id, value))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?,
            Some(_) => return Err("models.providers: must be an object".into()),
        };
        Self::from_providers(providers).map_err(|e| e.to_string())
    }

    /// Builds a registry from already-parsed configs (adding the built-in Ollama if absent).
    pub fn from_providers(configs: impl IntoIterator<Item = ProviderConfig>) -> Result<Self, ConfigError> {
        let mut entries = BTreeMap::new();
        for config in configs {
            let provider = build_provider(config.clone())?;
            entries.insert(config.id.clone(), Entry { config, provider });
        }
        if !entries.contains_key(OLLAMA_PROVIDER_ID) {
            let config = ProviderConfig::ollama_default();
            let provider = build_provider(config.clone())?;
            entries.insert(config.id.clone(), Entry { config, provider });
        }
        Ok(Self { entries })
    }

    /// The provider with this id.
    pub fn get(&self, provider_id: &str) -> Option<Arc<dyn Provider>> {
        self.entries.get(provider_id).map(|e| Arc::clone(&e.provider))
    }

    /// The config the provider was built from.
    pub fn config(&self, provider_id: &str) -> Option<&ProviderConfig> {
        self.entries.get(provider_id).map(|e| &e.config)
    }

    /// The declared model a reference points at, if the config declares it (models not declared
    /// can still be called: local servers rarely have their models listed in the config).
    pub fn model(&self, model: &ModelRef) -> Option<&ModelInfo> {
        self.config(&model.provider)?.model(&model.model)
    }

    /// Provider ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_ollama_is_present_without_config() {
        let registry = ProviderRegistry::from_config(&json!({})).expect("valid");
        assert_eq!(registry.ids().collect::<Vec<_>>(), ["ollama"]);
        let config = registry.config("ollama").expect("built in");
        assert_eq!(config.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(config.api, Api::OpenAiCompletions);
        assert!(config.api_key.is_none());
        assert_eq!(registry.get("ollama").expect("built in").id(), "ollama");
    }

    #[test]
    fn configured_ollama_replaces_the_default() {
        let root = json!({"models": {"providers": {"ollama": {"baseUrl": "http://gpu-box:11434/v1"}}}});
        let registry = ProviderRegistry::from_config(&root).expect("valid");
        assert_eq!(registry.config("ollama").expect("configured").base_url, "http://gpu-box:11434/v1");
    }

    #[test]
    fn providers_are_built_per_api_and_models_resolve() {
        let root = json!({"models": {"providers": {
            "fake": {"baseUrl": "http://127.0.0.1:28791/v1", "apiKey": "fake-key", "api": "openai-completions",
                     "models": [{"id": "fake-model", "contextWindow": 128000, "maxTokens": 4096}]},
            "claude": {"baseUrl": "https://api.anthropic.com", "apiKey": "k", "api": "anthropic-messages"}
        }}});
        let registry = ProviderRegistry::from_config(&root).expect("valid");
        assert_eq!(registry.ids().collect::<Vec<_>>(), ["claude", "fake", "ollama"]);
        assert_eq!(registry.config("claude").map(|c| c.api), Some(Api::AnthropicMessages));
        let model = registry.model(&ModelRef::parse("fake/fake-model").expect("valid")).expect("declared");
        assert_eq!(model.max_tokens, Some(4096));
        assert!(registry.get("missing").is_none());
    }

    #[test]
    fn bad_provider_is_reported_with_its_path() {
        let root = json!({"models": {"providers": {"x": {"baseUrl": 5}}}});
        let err = ProviderRegistry::from_config(&root).expect_err("invalid");
        assert!(err.starts_with("models.providers.x.baseUrl"), "{err}");
    }
}
