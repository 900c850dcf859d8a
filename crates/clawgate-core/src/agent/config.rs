//! Agents and models as configured (`agents.*`, `models.providers.*`), resolved once per config
//! version and swapped on reload.

use serde_json::Value;

use clawgate_llm::{ModelRef, ProviderConfig, ProviderRegistry};

/// The model used when neither the agent nor `agents.defaults.model.primary` names one: the
/// built-in Ollama provider with a small common model.
pub const FALLBACK_MODEL: &str = "ollama/llama3.2";
/// Messages of history sent to the model at most, before the token budget applies.
pub const MAX_CONTEXT_MESSAGES: usize = 200;
/// Default token budget for history when the model's context window is unknown.
pub const DEFAULT_CONTEXT_TOKENS: usize = 32_000;

/// One agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDef {
    /// `main` by default.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// `provider/model`.
    pub model: Option<String>,
    /// System prompt.
    pub system_prompt: Option<String>,
    /// Its heartbeat (`None`: it does not beat); see [`crate::heartbeat`].
    pub heartbeat: Option<crate::heartbeat::HeartbeatSpec>,
}

/// Every configured agent, plus defaults.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// Agents in config order; `main` is always present.
    pub agents: Vec<AgentDef>,
    /// The default agent's id.
    pub default_id: String,
    /// `agents.defaults.model.primary`.
    pub default_model: Option<String>,
    /// `agents.defaults.systemPrompt`.
    pub default_system_prompt: Option<String>,
    /// `agents.defaults.timeoutSeconds` (per run).
    pub timeout_secs: u64,
    /// `session.maxTranscriptEntries`: transcripts are compacted past this.
    pub max_transcript_entries: usize,
    /// `agents.defaults.contextMaxChars`: characters of a client's context the model reads.
    pub context_max_chars: usize,
}

impl AgentsConfig {
    /// Resolve `agents.*` and `session.*` of a decoded config. The types were checked when the
    /// config was decoded; what is left is the model reference rule, which is the LLM client's.
    pub fn from_config(config: &clawgate_config::Config) -> Result<Self, String> {
        let section = &config.agents;
        let model_of = |choice: &Option<clawgate_config::ModelChoice>, at: &str| -> Result<Option<String>, String> {
            let model = choice.as_ref().and_then(|c| c.primary.clone());
            if let Some(m) = &model {
                ModelRef::parse(m).map_err(|e| format!("{at}: {e}"))?;
            }
            Ok(model)
        };
        let defaults = &section.defaults;
        let default_beat = defaults.extra.get("heartbeat");
        // Upstream's rule: agents with their own `heartbeat` block beat if any has one; else the
        // default agent beats with the defaults.
        let any_own = section.list.iter().any(|a| a.extra.contains_key("heartbeat"));
        let mut agents = Vec::new();
        for (i, item) in section.list.iter().enumerate() {
            let heartbeat = match item.extra.get("heartbeat") {
                Some(own) => {
                    crate::heartbeat::resolve(default_beat, Some(own), &format!("agents.list[{i}].heartbeat"))?
                }
                None => None,
            };
            agents.push(AgentDef {
                id: item.id.clone(),
                name: item.name.clone(),
                model: model_of(&item.model, &format!("agents.list[{i}].model"))?,
                system_prompt: item.system_prompt.clone(),
                heartbeat,
            });
        }
        if !agents.iter().any(|a| a.id == "main") {
            agents.insert(
                0,
                AgentDef { id: "main".into(), name: None, model: None, system_prompt: None, heartbeat: None },
            );
        }
        let default_model = model_of(&defaults.model, "agents.defaults.model.primary")?;
        let default_id =
            section.default.as_deref().filter(|id| agents.iter().any(|a| a.id == *id)).unwrap_or("main").to_owned();
        let defaults_spec = crate::heartbeat::resolve(default_beat, None, "agents.defaults.heartbeat")?;
        if !any_own && let Some(agent) = agents.iter_mut().find(|a| a.id == default_id) {
            agent.heartbeat = defaults_spec;
        }
        Ok(Self {
            agents,
            default_id,
            default_model,
            default_system_prompt: defaults.system_prompt.clone(),
            timeout_secs: defaults.timeout_seconds.unwrap_or(600),
            context_max_chars: defaults
                .context_max_chars
                .map_or(super::context::DEFAULT_CONTEXT_MAX_CHARS, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_transcript_entries: config
                .session
                .max_transcript_entries
                .map_or(50_000, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }

    /// The agent with this id.
    pub fn get(&self, id: &str) -> Option<&AgentDef> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The model an agent uses.
    pub fn model_for(&self, agent: &AgentDef) -> String {
        agent.model.clone().or_else(|| self.default_model.clone()).unwrap_or_else(|| FALLBACK_MODEL.to_owned())
    }

    /// The system prompt of an agent.
    pub fn system_prompt_for(&self, agent: &AgentDef) -> String {
        agent.system_prompt.clone().or_else(|| self.default_system_prompt.clone()).unwrap_or_else(|| {
            format!(
                "You are {}, a helpful assistant reached through the clawgate gateway. Answer concisely.",
                agent.name.as_deref().unwrap_or("the assistant")
            )
        })
    }
}

/// Build the provider registry from `models.providers`, reading each `apiKey` secret. What a
/// provider entry means (`api` defaults, the Ollama URL, which URLs are usable) is the LLM
/// client's rule: it is given the entry with the key resolved.
pub fn registry_from_config(
    models: &clawgate_config::ModelsSection,
    base_dir: &std::path::Path,
) -> Result<ProviderRegistry, String> {
    let mut providers = Vec::with_capacity(models.providers.len());
    for (id, section) in &models.providers {
        let mut entry = serde_json::to_value(section).map_err(|e| format!("models.providers.{id}: {e}"))?;
        match &section.api_key {
            Some(secret) => {
                entry["apiKey"] =
                    Value::String(secret.resolve(base_dir).map_err(|e| format!("models.providers.{id}.apiKey: {e}"))?);
            }
            None => {
                if let Some(o) = entry.as_object_mut() {
                    o.remove("apiKey");
                }
            }
        }
        providers.push(ProviderConfig::from_json(id, &entry).map_err(|e| e.to_string())?);
    }
    ProviderRegistry::from_providers(providers).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agents(value: Value) -> Result<AgentsConfig, String> {
        let config = clawgate_config::Config::from_value(&value).map_err(|e| e.to_string())?;
        AgentsConfig::from_config(&config)
    }

    #[test]
    fn main_agent_exists_without_config_and_uses_fallback_model() {
        let a = agents(json!({})).unwrap();
        assert_eq!(a.default_id, "main");
        assert_eq!(a.model_for(a.get("main").unwrap()), FALLBACK_MODEL);
    }

    #[test]
    fn agent_model_overrides_default_model() {
        let a = agents(json!({
            "agents": {"defaults": {"model": {"primary": "fake/fake-model"}},
                       "list": [{"id": "coder", "model": "other/m2", "systemPrompt": "be terse"}]}
        }))
        .unwrap();
        assert_eq!(a.model_for(a.get("main").unwrap()), "fake/fake-model");
        assert_eq!(a.model_for(a.get("coder").unwrap()), "other/m2");
        assert_eq!(a.system_prompt_for(a.get("coder").unwrap()), "be terse");
    }

    #[test]
    fn bad_agent_entries_name_the_key() {
        let err = agents(json!({"agents": {"list": [{"name": "x"}]}})).unwrap_err();
        assert!(err.starts_with("agents.list[0].id: required"), "{err}");
        let err = agents(json!({"agents": {"list": [{"id": "a"}, {"id": "a"}]}})).unwrap_err();
        assert!(err.starts_with("agents.list[1].id: duplicate agent id \"a\""), "{err}");
        let err = agents(json!({"agents": {"defaults": {"model": "nomodel"}}})).unwrap_err();
        assert!(err.starts_with("agents.defaults.model.primary"), "{err}");
    }

    #[test]
    fn session_and_timeouts_come_from_the_typed_sections() {
        let a = agents(json!({"agents": {"defaults": {"timeoutSeconds": 5, "workspace": "~/w"}},
                              "session": {"maxTranscriptEntries": 10, "scope": "per-sender"}}))
        .unwrap();
        assert_eq!((a.timeout_secs, a.max_transcript_entries), (5, 10));
        let err = agents(json!({"agents": {"defaults": {"timeoutSeconds": "5"}}})).unwrap_err();
        assert!(err.starts_with("agents.defaults.timeoutSeconds"), "{err}");
    }

    #[test]
    fn provider_keys_are_resolved_before_the_llm_client_sees_them() {
        let config = clawgate_config::Config::from_value(&json!({"models": {"providers": {
            "p": {"baseUrl": "http://127.0.0.1:1/v1", "apiKey": {"env": "CLAWGATE_TEST_UNSET_PROVIDER_KEY"}}}}}))
        .unwrap();
        let err = registry_from_config(&config.models, std::path::Path::new("/")).unwrap_err();
        assert!(err.starts_with("models.providers.p.apiKey"), "{err}");
        let config = clawgate_config::Config::from_value(&json!({"models": {"providers": {
            "p": {"baseUrl": "http://127.0.0.1:1/v1", "apiKey": "k", "models": [{"id": "m", "contextWindow": 8}]}}}}))
        .unwrap();
        let registry = registry_from_config(&config.models, std::path::Path::new("/")).unwrap();
        assert_eq!(registry.config("p").unwrap().api_key.as_deref(), Some("k"));
        assert_eq!(registry.config("p").unwrap().models[0].context_window, Some(8));
    }
}
