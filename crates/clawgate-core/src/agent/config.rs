//! Agents and models as configured (`agents.*`, `models.providers.*`), resolved once per config
//! version and swapped on reload.

use serde_json::Value;

use clawgate_llm::{ModelRef, ProviderRegistry};

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
}

fn model_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Object(o) => o.get("primary").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl AgentsConfig {
    /// Read `agents.*` and `session.*` from the whole config value.
    pub fn from_config(root: &Value) -> Result<Self, String> {
        let agents_v = root.get("agents").cloned().unwrap_or(Value::Null);
        let defaults = agents_v.get("defaults").cloned().unwrap_or(Value::Null);
        let mut agents = Vec::new();
        if let Some(list) = agents_v.get("list") {
            let Some(items) = list.as_array() else { return Err("agents.list: must be an array".into()) };
            for (i, item) in items.iter().enumerate() {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| format!("agents.list[{i}].id: required (a short name such as \"main\")"))?;
                if agents.iter().any(|a: &AgentDef| a.id == id) {
                    return Err(format!("agents.list[{i}].id: duplicate agent id \"{id}\""));
                }
                let model = model_string(item.get("model"));
                if let Some(m) = &model {
                    ModelRef::parse(m).map_err(|e| format!("agents.list[{i}].model: {e}"))?;
                }
                agents.push(AgentDef {
                    id: id.to_owned(),
                    name: item.get("name").and_then(Value::as_str).map(str::to_owned),
                    model,
                    system_prompt: item.get("systemPrompt").and_then(Value::as_str).map(str::to_owned),
                });
            }
        }
        if !agents.iter().any(|a| a.id == "main") {
            agents.insert(0, AgentDef { id: "main".into(), name: None, model: None, system_prompt: None });
        }
        let default_model = model_string(defaults.get("model"));
        if let Some(m) = &default_model {
            ModelRef::parse(m).map_err(|e| format!("agents.defaults.model.primary: {e}"))?;
        }
        let default_id = agents_v
            .get("default")
            .and_then(Value::as_str)
            .filter(|id| agents.iter().any(|a| a.id == *id))
            .unwrap_or("main")
            .to_owned();
        Ok(Self {
            agents,
            default_id,
            default_model,
            default_system_prompt: defaults.get("systemPrompt").and_then(Value::as_str).map(str::to_owned),
            timeout_secs: defaults.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(600),
            max_transcript_entries: root
                .get("session")
                .and_then(|s| s.get("maxTranscriptEntries"))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .unwrap_or(50_000),
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

/// Resolve `{env: NAME}` / `{file: PATH}` API keys in `models.providers.*` so the LLM crate
/// only ever sees strings.
pub fn resolve_provider_secrets(root: &Value, base_dir: &std::path::Path) -> Result<Value, String> {
    let mut root = root.clone();
    if let Some(providers) = root.get_mut("models").and_then(|m| m.get_mut("providers")).and_then(Value::as_object_mut)
    {
        for (id, p) in providers.iter_mut() {
            if let Some(key) = p.get_mut("apiKey")
                && key.is_object()
            {
                let secret = match (key.get("env").and_then(Value::as_str), key.get("file").and_then(Value::as_str)) {
                    (Some(env), None) => clawgate_config::Secret::Env { env: env.to_owned() },
                    (None, Some(file)) => clawgate_config::Secret::File { file: file.into() },
                    _ => {
                        return Err(format!(
                            "models.providers.{id}.apiKey: expected a string, {{env: NAME}} or {{file: PATH}}"
                        ));
                    }
                };
                *key =
                    Value::String(secret.resolve(base_dir).map_err(|e| format!("models.providers.{id}.apiKey: {e}"))?);
            }
        }
    }
    Ok(root)
}

/// Build the provider registry from the whole config value.
pub fn registry_from_config(root: &Value, base_dir: &std::path::Path) -> Result<ProviderRegistry, String> {
    ProviderRegistry::from_config(&resolve_provider_secrets(root, base_dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn main_agent_exists_without_config_and_uses_fallback_model() {
        let a = AgentsConfig::from_config(&json!({})).unwrap();
        assert_eq!(a.default_id, "main");
        assert_eq!(a.model_for(a.get("main").unwrap()), FALLBACK_MODEL);
    }

    #[test]
    fn agent_model_overrides_default_model() {
        let a = AgentsConfig::from_config(&json!({
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
        let err = AgentsConfig::from_config(&json!({"agents": {"list": [{"name": "x"}]}})).unwrap_err();
        assert!(err.starts_with("agents.list[0].id"), "{err}");
        let err = AgentsConfig::from_config(&json!({"agents": {"defaults": {"model": "nomodel"}}})).unwrap_err();
        assert!(err.starts_with("agents.defaults.model.primary"), "{err}");
    }
}
