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
    channels(loaded, &mut out);
    comfy(loaded, &ctx.scheduled_templates, &mut out);
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

/// One check per enabled chat account: the platform's identity call with its token.
fn channels(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Probe>) {
    let Ok(accounts) = clawgate_channels::accounts_from_config(&loaded.config.channels, loaded.base_dir()) else {
        // The config check already failed on this.
        return;
    };
    for account in accounts {
        let key = account.key.clone();
        let id = format!("channels.{}.{}", key.channel, key.account);
        if !account.enabled {
            out.push(Probe::new(id, Section::Channels, key.to_string(), async move {
                Finding::skipped(format!("{key}: disabled (enabled: false)"))
            }));
            continue;
        }
        out.push(Probe::new(id, Section::Channels, key.to_string(), async move {
            channel_finding(&key.to_string(), clawgate_channels::probe_account(&account).await)
        }));
    }
}

/// What a platform's answer about an account means for the operator.
fn channel_finding(key: &str, probed: Result<clawgate_channels::Identity, clawgate_channels::ProbeError>) -> Finding {
    use clawgate_channels::ProbeError;
    match probed {
        Ok(me) => {
            let name = me.name.map_or_else(|| format!("id {}", me.id), |n| format!("{n} (id {})", me.id));
            Finding::ok(format!("{key}: token valid, bot {name}"))
        }
        Err(ProbeError::Rejected(m)) => Finding::fail(
            format!("{key}: token rejected: {m}"),
            "copy the token again from the platform's console into the config (it may have been revoked or regenerated)",
        ),
        Err(ProbeError::Unreachable(m)) => Finding::fail(
            format!("{key}: not reachable: {m}"),
            "check this machine's network, proxy and firewall, and apiRoot if you set one",
        ),
        Err(ProbeError::Config(m)) => Finding::fail(format!("{key}: {m}"), "fix the setting named"),
        Err(ProbeError::Failed(m)) => Finding::fail(
            format!("{key}: the platform answered unexpectedly: {m}"),
            "try again; if it persists, check the platform's status page",
        ),
    }
}

/// One check per ComfyUI worker: `/system_stats` (the version), and for `openclaw` workers the
/// extension's health and template list.
fn comfy(loaded: &clawgate_config::LoadedConfig, scheduled: &[(String, String)], out: &mut Vec<Probe>) {
    let Ok(Some(cfg)) = clawgate_core::comfy::ComfyConfig::from_config(&loaded.config, loaded.base_dir()) else {
        return;
    };
    if !scheduled.is_empty() {
        out.push(Probe::new(
            "comfy.schedules",
            Section::Comfy,
            "the templates of ComfyUI schedules",
            scheduled_templates_exist(cfg.clone(), scheduled.to_vec()),
        ));
    }
    for worker in cfg.workers {
        let name = worker.name.clone();
        let what = format!("ComfyUI worker {name}");
        out.push(Probe::new(format!("comfy.{name}"), Section::Comfy, what, comfy_worker(worker)));
    }
}

/// Every template a stored schedule runs is somewhere a worker can run it: the local templates
/// (native workers) or an `openclaw` worker's list.
async fn scheduled_templates_exist(
    cfg: clawgate_core::comfy::ComfyConfig,
    scheduled: Vec<(String, String)>,
) -> Finding {
    let mut known: BTreeSet<String> = BTreeSet::new();
    if cfg.workers.iter().any(|w| w.openclaw.is_none())
        && let Ok(lib) = clawgate_comfy::templates::TemplateLibrary::load(&cfg.templates_dir)
    {
        known.extend(lib.list().into_iter().map(|t| t.id));
    }
    for w in cfg.workers.iter().filter(|w| w.openclaw.is_some()) {
        let Some(auth) = &w.openclaw else { continue };
        if let Ok(client) =
            clawgate_comfy::openclaw::OpenClawClient::new(w.url.expose(), auth.admin_token.clone(), None)
            && let Ok(templates) = client.with_obs_token(auth.obs_token.clone()).templates().await
        {
            known.extend(templates.into_iter().map(|t| t.id));
        }
    }
    let missing: Vec<String> =
        scheduled.iter().filter(|(_, t)| !known.contains(t)).map(|(name, t)| format!("\"{name}\" runs {t}")).collect();
    if missing.is_empty() {
        Finding::ok(format!(
            "the {} ComfyUI schedule{} run templates that exist",
            scheduled.len(),
            plural(scheduled.len())
        ))
    } else {
        Finding::fail(
            format!("schedule {}, which no worker has", missing.join(", schedule ")),
            "add the template (comfy.templatesDir, or the extension's data/templates), or change the schedule \
             (`clawgate call cron.update` / `cron.remove`)",
        )
    }
}

async fn comfy_worker(w: clawgate_comfy::pool::WorkerConfig) -> Finding {
    use clawgate_comfy::client::{ComfyClient, ComfyError};
    let name = &w.name;
    let url = w.url.shown().into_owned();
    let url_path = format!("the url of comfy.workers \"{name}\"");
    let stats = match ComfyClient::new(w.url.expose(), "clawgate-doctor") {
        Ok(c) => c.system_info().await,
        Err(e) => return Finding::fail(format!("{name}: {e}"), format!("fix {url_path}")),
    };
    let comfyui = match stats {
        Ok(s) => s.comfyui_version.map_or_else(|| "ComfyUI (version not given)".to_owned(), |v| format!("ComfyUI {v}")),
        Err(ComfyError::Transport { .. }) => {
            return Finding::fail(
                format!("{name}: not reachable at {url}"),
                format!("start ComfyUI there (with --listen if it is on another machine), or fix {url_path}"),
            );
        }
        Err(e) => {
            return Finding::fail(
                format!("{name}: {url} does not answer like ComfyUI: {e}"),
                format!("check {url_path}: it must be the ComfyUI server's own address"),
            );
        }
    };
    let Some(auth) = w.openclaw.clone() else {
        return Finding::ok(format!("{name}: {comfyui} at {url}"));
    };
    let device = match (auth.device_id.clone(), auth.device_token.clone()) {
        (Some(id), Some(token)) => Some(clawgate_comfy::openclaw::DeviceCredentials::new(id, token)),
        _ => None,
    };
    let client = match clawgate_comfy::openclaw::OpenClawClient::new(w.url.expose(), auth.admin_token.clone(), device) {
        Ok(c) => c.with_obs_token(auth.obs_token.clone()),
        Err(e) => return Finding::fail(format!("{name}: {e}"), "fix the worker's adminToken, obsToken or device"),
    };
    let version = match client.health().await {
        Ok(h) => h.version.unwrap_or_else(|| "(version not given)".into()),
        Err(e) => {
            return Finding::fail(
                format!("{name}: {comfyui} answers, but the ComfyUI-OpenClaw extension does not: {e}"),
                "install or enable the ComfyUI-OpenClaw extension on that ComfyUI, or set the worker's mode to \"comfyui\"",
            );
        }
    };
    match client.templates().await {
        Ok(t) if t.is_empty() => Finding::warn(
            format!("{name}: {comfyui}, ComfyUI-OpenClaw {version}, but it has no templates"),
            "add templates to the extension's data/templates: /run has nothing to run on this worker",
        ),
        Ok(t) => {
            let ids: Vec<&str> = t.iter().map(|t| t.id.as_str()).take(8).collect();
            let more = if t.len() > ids.len() { ", …" } else { "" };
            Finding::ok(format!(
                "{name}: {comfyui}, ComfyUI-OpenClaw {version}, {} template{} ({}{more})",
                t.len(),
                plural(t.len()),
                ids.join(", ")
            ))
        }
        Err(e) if matches!(e.status(), Some(401 | 403)) => Finding::fail(
            format!("{name}: the extension refused its template list ({e})"),
            "set the worker's obsToken (the extension's OPENCLAW_OBS_TOKEN) or a valid adminToken",
        ),
        Err(e) => Finding::fail(format!("{name}: the extension's template list failed: {e}"), "check the ComfyUI log"),
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
