//! `commands.list` and `models.list`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::CoreError;
use crate::gateway::Gateway;

/// `commands.list` → the chat commands clawgate understands.
pub async fn commands_list() -> Result<Value, CoreError> {
    let cmd = |name: &str, description: &str, category: &str| {
        json!({"name": name, "nativeName": name, "textAliases": [format!("/{name}")], "description": description,
               "category": category, "source": "native", "scope": "both", "acceptsArgs": false})
    };
    Ok(json!({"commands": [
        cmd("new", "Start a new session (the old transcript is kept).", "session"),
        cmd("reset", "Reset the current session.", "session"),
    ]}))
}

/// `models.list` → every model named in `models.providers.*.models[]`, plus the agents' models.
pub async fn models_list(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    let registry = gw.agents.registry();
    let mut models = Vec::new();
    for id in registry.ids() {
        let Some(cfg) = registry.config(id) else { continue };
        for m in &cfg.models {
            let mut v = json!({"id": m.id, "name": m.name, "provider": id});
            if let Some(w) = m.context_window {
                v["contextWindow"] = json!(w.max(1));
            }
            models.push(v);
        }
    }
    let agents = gw.agents.agents();
    for a in &agents.agents {
        let full = agents.model_for(a);
        if let Some((provider, model)) = full.split_once('/')
            && !models.iter().any(|m| m["provider"] == provider && m["id"] == model)
        {
            models.push(json!({"id": model, "name": model, "provider": provider}));
        }
    }
    Ok(json!({"models": models}))
}
