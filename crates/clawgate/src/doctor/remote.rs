//! The checks that talk to other servers: each configured provider, chat account and ComfyUI
//! worker. Each becomes one [`Probe`] that the runner starts concurrently under a timeout; the
//! clients are the gateway's own (the same URLs, headers and error mapping it runs with).

use std::collections::{BTreeMap, BTreeSet};

use clawgate_config::redact_url_userinfo;
use clawgate_llm::{LlmError, ModelRef};

use super::report::{Finding, Section};
use super::{Ctx, Probe};

/// The network checks the config calls for, in report order.
pub(crate) fn probes(ctx: &Ctx) -> Vec<Probe> {
    let Some(loaded) = &ctx.loaded else { return Vec::new() };
    let mut out = Vec::new();
    providers(loaded, &mut out);
    out
}

/// One check per provider the gateway would call: those under `models.providers`, and the
/// built-in Ollama when an agent's model (or the fallback model) points at it.
fn providers(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Probe>) {
    let cfg = &loaded.config;
    let registry = match clawgate_core::agent::config::registry_from_config(&cfg.models, loaded.base_dir()) {
        Ok(r) => r,
        // The config check already failed on this; nothing to call.
        Err(_) => return,
    };
    // provider id → the models agents use on it.
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Ok(agents) = clawgate_core::agent::AgentsConfig::from_config(cfg) {
        let default =
            agents.default_model.clone().unwrap_or_else(|| clawgate_core::agent::config::FALLBACK_MODEL.into());
        for a in &agents.agents {
            let model = a.model.clone().unwrap_or_else(|| default.clone());
            if let Ok(r) = ModelRef::parse(&model) {
                used.entry(r.provider).or_default().insert(r.model);
            }
        }
    }
    let configured: BTreeSet<&String> = cfg.models.providers.keys().collect();
    let ids: BTreeSet<String> = configured
        .iter()
        .map(|s| (*s).clone())
        .chain(used.keys().filter(|id| registry.get(id).is_some()).cloned())
        .collect();
    for id in ids {
        let (Some(provider), Some(pc)) = (registry.get(&id), registry.config(&id)) else { continue };
        let implicit = !configured.contains(&id);
        let url = redact_url_userinfo(&pc.base_url).into_owned();
        let has_key = pc.api_key.is_some();
        let mut wanted = used.remove(&id).unwrap_or_default();
        wanted.extend(pc.models.iter().map(|m| m.id.clone()));
        let what = format!("provider {id}");
        out.push(Probe::new(format!("providers.{id}"), Section::Providers, what, async move {
            let listed = provider.list_models().await;
            provider_finding(&id, &url, has_key, implicit, &wanted, listed)
        }));
    }
}

/// What a provider's answer to the models list means for the operator.
fn provider_finding(
    id: &str,
    url: &str,
    has_key: bool,
    implicit: bool,
    wanted: &BTreeSet<String>,
    listed: Result<Vec<clawgate_llm::RemoteModel>, LlmError>,
) -> Finding {
    let key_path = format!("models.providers.{id}.apiKey");
    let url_path = format!("models.providers.{id}.baseUrl");
    let down = |detail: String| {
        let message = format!("{id}: not reachable at {url} ({detail})");
        if implicit {
            Finding::warn(
                format!("{message}; it is the built-in provider of the default model"),
                "start it (`ollama serve`), or set agents.defaults.model.primary to a configured provider's model",
            )
        } else {
            Finding::fail(message, format!("check {url_path} and that the server runs and is reachable from here"))
        }
    };
    match listed {
        Ok(models) => {
            let ids: BTreeSet<&str> = models.iter().map(|m| m.id.as_str()).collect();
            let missing: Vec<&str> = wanted.iter().map(String::as_str).filter(|m| !ids.contains(m)).collect();
            let key = if has_key { ", key accepted" } else { "" };
            if missing.is_empty() {
                Finding::ok(format!(
                    "{id}: reachable at {url}{key}, {} model{} offered",
                    models.len(),
                    plural(models.len())
                ))
            } else {
                let offered: Vec<&str> = ids.iter().take(8).copied().collect();
                Finding::warn(
                    format!("{id}: reachable at {url}{key}, but it does not offer {}", missing.join(", ")),
                    if offered.is_empty() {
                        "load or pull the model on the server, or name one it offers in the config".to_owned()
                    } else {
                        format!("load the model on the server, or use one it offers: {}", offered.join(", "))
                    },
                )
            }
        }
        Err(LlmError::Auth { status, .. }) => Finding::fail(
            format!("{id}: key rejected at {url} (HTTP {status})"),
            if has_key {
                format!("put a valid key in {key_path}")
            } else {
                format!("set {key_path}: the server wants one")
            },
        ),
        Err(LlmError::Connect { detail, .. }) => down(detail),
        Err(LlmError::Timeout { .. }) => down("timed out".into()),
        Err(LlmError::RateLimited { .. }) => Finding::warn(
            format!("{id}: reachable at {url}, but it rate-limits this key right now"),
            "wait, or raise the key's limits with the provider",
        ),
        Err(LlmError::BadRequest { status: 404, .. }) => Finding::fail(
            format!("{id}: {url} has no models list (HTTP 404)"),
            format!("check {url_path}: OpenAI-compatible servers usually serve under /v1"),
        ),
        Err(e) => Finding::fail(
            format!("{id}: the models list at {url} failed: {e}"),
            format!("check {url_path} and the server's log"),
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn model(id: &str) -> clawgate_llm::RemoteModel {
        clawgate_llm::RemoteModel { id: id.into(), display_name: None, owned_by: None }
    }

    #[test]
    fn a_configured_model_the_server_does_not_offer_is_a_warning() {
        let wanted = BTreeSet::from(["gpt-x".to_owned()]);
        let f = provider_finding("openai", "http://h/v1", true, false, &wanted, Ok(vec![model("gpt-y")]));
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("does not offer gpt-x") && f.message.contains("key accepted"), "{}", f.message);
        assert!(f.fix.unwrap().contains("gpt-y"));
    }

    #[test]
    fn the_implicit_ollama_being_down_is_a_warning_and_a_configured_one_a_failure() {
        let refused = || {
            Err(LlmError::Connect {
                provider: "ollama".into(),
                base_url: "http://127.0.0.1:11434/v1".into(),
                detail: "Connection refused".into(),
                source: "refused".into(),
            })
        };
        let none = BTreeSet::new();
        assert_eq!(provider_finding("ollama", "u", false, true, &none, refused()).status, Status::Warn);
        let f = provider_finding("ollama", "u", false, false, &none, refused());
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.message, "ollama: not reachable at u (Connection refused)");
    }
}
