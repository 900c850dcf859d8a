//! The sections clawgate shares with OpenClaw's config (`agents`, `models`, `session`, …), typed.
//!
//! Each section is decoded once, with the gateway's decoder: a wrong type or value is an issue
//! with its key path and file position, all issues are collected. Unlike `gateway`, these
//! sections are open: OpenClaw writes many keys here that clawgate does not use
//! (`agents.defaults.workspace`, `models.mode`, …). Those are kept as written in each type's
//! `extra` (passthrough, serialised back in place) so an OpenClaw config keeps loading; one
//! that looks like a typo of a key clawgate reads gets a warning with a did-you-mean hint
//! ([`crate::LoadedConfig::warnings`]).
//!
//! Secrets are [`Secret`]s; where they are is still named by [`crate::SECRET_PATHS`], which
//! redaction (`Serialize`, `Debug`, `config.get`) and the UI hints follow.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::decode::{Decoder, describe, kind, secret};
use crate::path::KeyPath;
use crate::secret::Secret;

// ---------------------------------------------------------------------------------------------
// agents

/// `agents.*`: the agents and their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentsSection {
    /// The id of the agent used when none is named (default `main`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Settings every agent inherits.
    pub defaults: AgentDefaults,
    /// The agents; `main` exists even when not listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<AgentEntry>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `agents.defaults.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDefaults {
    /// The model of agents that name none: `"provider/model"` or `{primary: "provider/model"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelChoice>,
    /// The system prompt of agents that set none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// How long one agent run may take, in seconds (default 600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of `agents.list`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    /// A short unique name (`main`, `coder`).
    pub id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `"provider/model"` or `{primary: "provider/model"}`; unset uses `agents.defaults.model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelChoice>,
    /// The system prompt; unset uses `agents.defaults.systemPrompt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A model choice as OpenClaw writes it: `"provider/model"` or `{primary, fallbacks?}`.
/// Serialised as the object form.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelChoice {
    /// The model used, `provider/model` (trimmed when written as a plain string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// OpenClaw keys clawgate does not use (`fallbacks`), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl JsonSchema for ModelChoice {
    fn schema_name() -> Cow<'static, str> {
        "ModelChoice".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "\"provider/model\" (e.g. \"ollama/llama3.2\") or {\"primary\": \"provider/model\"}.",
            "anyOf": [
                { "type": "string" },
                { "type": "object", "properties": { "primary": { "type": "string" } } }
            ]
        })
    }
}

pub(crate) const AGENTS_KEYS: &[&str] = &["default", "defaults", "list"];
const AGENT_DEFAULTS_KEYS: &[&str] = &["model", "systemPrompt", "timeoutSeconds"];
const AGENT_KEYS: &[&str] = &["id", "name", "model", "systemPrompt"];
const MODEL_CHOICE_KEYS: &[&str] = &["primary"];
/// OpenClaw keys near a clawgate one that must not be taken for its typo.
const AGENT_UPSTREAM: &[&str] = &["models", "imageModel", "default", "identity"];
const MODEL_CHOICE_UPSTREAM: &[&str] = &["fallbacks"];

pub(crate) fn agents(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<AgentsSection> {
    let mut out = AgentsSection::default();
    let obj = d.open_object(v, p, AGENTS_KEYS, &[], &mut out.extra)?;
    d.field(obj, p, "default", &mut out.default, Decoder::opt_string);
    d.field(obj, p, "defaults", &mut out.defaults, agent_defaults);
    d.field(obj, p, "list", &mut out.list, agent_list);
    Some(out)
}

fn agent_defaults(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<AgentDefaults> {
    let mut out = AgentDefaults::default();
    let obj = d.open_object(v, p, AGENT_DEFAULTS_KEYS, AGENT_UPSTREAM, &mut out.extra)?;
    d.field(obj, p, "model", &mut out.model, model_choice);
    d.field(obj, p, "systemPrompt", &mut out.system_prompt, Decoder::opt_string);
    d.field(obj, p, "timeoutSeconds", &mut out.timeout_seconds, |d, v, p| {
        d.integer(v, p, 0, u64::MAX, "a whole number of seconds").map(Some)
    });
    Some(out)
}

fn agent_list(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Vec<AgentEntry>> {
    let Value::Array(items) = v else {
        return d.fail(p, format!("expected an array [ … ], found {}", kind(v)));
    };
    let mut list: Vec<AgentEntry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = p.index(i);
        let Some(entry) = agent_entry(d, item, &at) else { continue };
        if list.iter().any(|a| a.id == entry.id) {
            d.fail::<()>(&at.child("id"), format!("duplicate agent id \"{}\"", entry.id));
            continue;
        }
        list.push(entry);
    }
    Some(list)
}

fn agent_entry(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<AgentEntry> {
    let mut out = AgentEntry::default();
    let obj = d.open_object(v, p, AGENT_KEYS, AGENT_UPSTREAM, &mut out.extra)?;
    d.field(obj, p, "name", &mut out.name, Decoder::opt_string);
    d.field(obj, p, "model", &mut out.model, model_choice);
    d.field(obj, p, "systemPrompt", &mut out.system_prompt, Decoder::opt_string);
    let id_at = p.child("id");
    let id = match obj.get("id").filter(|v| !v.is_null()) {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::String(_)) | None => {
            return d.fail(&id_at, "required (a short name such as \"main\")".to_owned());
        }
        Some(other) => return d.fail(&id_at, format!("expected a string, found {}", describe(other))),
    };
    out.id = id;
    Some(out)
}

fn model_choice(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Option<ModelChoice>> {
    match v {
        Value::String(text) if text.trim().is_empty() => Some(None),
        Value::String(text) => Some(Some(ModelChoice { primary: Some(text.trim().to_owned()), extra: Map::new() })),
        Value::Object(_) => {
            let mut out = ModelChoice::default();
            let obj = d.open_object(v, p, MODEL_CHOICE_KEYS, MODEL_CHOICE_UPSTREAM, &mut out.extra)?;
            d.field(obj, p, "primary", &mut out.primary, Decoder::opt_string);
            Some(Some(out))
        }
        other => d.fail(
            p,
            format!("expected \"provider/model\" or {{\"primary\": \"provider/model\"}}, found {}", describe(other)),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// models

/// `models.*`: the model providers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelsSection {
    /// Providers by id (the `provider` of `provider/model`). A built-in `ollama` at
    /// `http://127.0.0.1:11434/v1` is there unless defined here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderSection>,
    /// OpenClaw keys clawgate does not use (`mode`), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `models.providers.<id>`. Which `api` values and URLs a provider accepts is the LLM client's
/// rule (`clawgate_llm::ProviderConfig`); this type holds what is written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSection {
    /// API root, e.g. `https://api.openai.com/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `openai-completions`, `anthropic-messages` or `ollama`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The API key (an empty string means none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Whether to send the key as `Authorization: Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<bool>,
    /// Extra headers on every request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The models it serves, as `models.list` shows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Value>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) const MODELS_KEYS: &[&str] = &["providers"];
const PROVIDER_KEYS: &[&str] = &["baseUrl", "api", "apiKey", "authHeader", "headers", "models"];
const PROVIDER_MODEL_KEYS: &[&str] =
    &["id", "name", "contextWindow", "maxTokens", "input", "reasoning", "headers", "compat"];
const PROVIDER_MODEL_UPSTREAM: &[&str] = &["cost"];

pub(crate) fn models(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ModelsSection> {
    let mut out = ModelsSection::default();
    let obj = d.open_object(v, p, MODELS_KEYS, &["mode"], &mut out.extra)?;
    d.field(obj, p, "providers", &mut out.providers, |d, v, p| {
        let Value::Object(providers) = v else {
            return d.fail(p, format!("expected an object of provider id → settings, found {}", kind(v)));
        };
        Some(providers.iter().filter_map(|(id, v)| Some((id.clone(), provider(d, v, &p.child(id))?))).collect())
    });
    Some(out)
}

fn provider(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ProviderSection> {
    let mut out = ProviderSection::default();
    let obj = d.open_object(v, p, PROVIDER_KEYS, &["auth"], &mut out.extra)?;
    d.field(obj, p, "baseUrl", &mut out.base_url, Decoder::opt_string);
    d.field(obj, p, "api", &mut out.api, Decoder::opt_string);
    d.field(obj, p, "apiKey", &mut out.api_key, optional_secret);
    d.field(obj, p, "authHeader", &mut out.auth_header, |d, v, p| d.boolean(v, p).map(Some));
    d.field(obj, p, "headers", &mut out.headers, Decoder::string_map);
    d.field(obj, p, "models", &mut out.models, |d, v, p| {
        d.list(v, p, |d, v, p| {
            let mut extra = Map::new();
            let obj = d.open_object(v, p, PROVIDER_MODEL_KEYS, PROVIDER_MODEL_UPSTREAM, &mut extra)?;
            let mut id = None;
            d.field(obj, p, "id", &mut id, Decoder::opt_string);
            if id.as_deref().is_none_or(str::is_empty) {
                return d.fail(&p.child("id"), "is required and must be a non-empty string".to_owned());
            }
            let mut name = None;
            d.field(obj, p, "name", &mut name, Decoder::opt_string);
            for key in ["contextWindow", "maxTokens"] {
                let mut n = 0;
                d.field(obj, p, key, &mut n, |d, v, p| {
                    d.integer(v, p, 0, u64::from(u32::MAX), "a positive whole number")
                });
            }
            let mut flag = false;
            d.field(obj, p, "reasoning", &mut flag, Decoder::boolean);
            let mut input = Vec::new();
            d.field(obj, p, "input", &mut input, Decoder::strings);
            let mut headers = BTreeMap::new();
            d.field(obj, p, "headers", &mut headers, Decoder::string_map);
            Some(v.clone())
        })
    });
    Some(out)
}

/// A secret where OpenClaw writes `""` for "none" (`apiKey: ""`): empty means unset.
fn optional_secret(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Option<Secret>> {
    match v {
        Value::String(s) if s.is_empty() => Some(None),
        _ => secret(d, v, p).map(Some),
    }
}

// ---------------------------------------------------------------------------------------------
// session

/// `session.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSection {
    /// Transcript entries kept per session before older ones are compacted (default 50000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_transcript_entries: Option<u64>,
    /// OpenClaw keys clawgate does not use (`scope`, `reset`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) const SESSION_KEYS: &[&str] = &["maxTranscriptEntries"];

pub(crate) fn session(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<SessionSection> {
    let mut out = SessionSection::default();
    let obj = d.open_object(v, p, SESSION_KEYS, &[], &mut out.extra)?;
    d.field(obj, p, "maxTranscriptEntries", &mut out.max_transcript_entries, |d, v, p| {
        d.integer(v, p, 0, u64::MAX, "a whole number of entries").map(Some)
    });
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// showing

/// A section as shown outside (`Serialize`, `Debug`): typed secrets as their reference or
/// [`crate::REDACTED`], and every string at a [`crate::SECRET_PATHS`] place redacted, `extra`
/// included.
pub(crate) fn shown<T: Serialize>(name: &str, section: &T) -> Value {
    match serde_json::to_value(section) {
        Ok(Value::Object(map)) => crate::redact::redacted_section(name, &map),
        Ok(other) => other,
        Err(_) => Value::Null,
    }
}

pub(crate) fn ser_shown<T: Serialize, S: Serializer>(name: &str, section: &T, s: S) -> Result<S::Ok, S::Error> {
    shown(name, section).serialize(s)
}

// ---------------------------------------------------------------------------------------------
// comfy

/// `comfy.*`: ComfyUI workers, templates and delivery limits. The section being there (even
/// `{}`) turns ComfyUI jobs on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComfySection {
    /// The templates directory, relative to the config file's directory (default `templates`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<String>,
    /// The ComfyUI servers, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<ComfyWorker>,
    /// Limits on what a job delivers to the chat.
    pub delivery: ComfyDelivery,
    /// Links to job outputs.
    pub media: ComfyMedia,
    /// Who may run which chat command (`adminUsers`, `trustedUsers`, `trustedChats`,
    /// `allowFrom`, `overrides`); the command grammar's rule, checked by it.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub commands: Value,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `comfy.workers[]`: one ComfyUI server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComfyWorker {
    /// A unique name (default `worker-<n>`).
    pub name: String,
    /// Base URL of its HTTP API (`http://` or `https://`). A password in it is a secret.
    pub url: String,
    /// How clawgate drives it.
    pub mode: WorkerMode,
    /// `openclaw` mode: the extension's `OPENCLAW_ADMIN_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// `openclaw` mode: the extension's observer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obs_token: Option<Secret>,
    /// `openclaw` mode: the bridge device clawgate acts as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<ComfyDevice>,
    /// Jobs run on it at once (1–64, default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Relative capacity when spreading jobs (a positive number, default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `comfy.workers[].mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    /// Native ComfyUI, driven by clawgate.
    #[default]
    Comfyui,
    /// ComfyUI with the ComfyUI-OpenClaw extension, driven through its endpoints.
    Openclaw,
}

/// `comfy.workers[].device`: the bridge device of an `openclaw` worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComfyDevice {
    /// The device id the extension knows.
    pub id: String,
    /// The device token (`OPENCLAW_BRIDGE_DEVICE_TOKEN` or an issued one).
    pub token: Option<Secret>,
    /// Scopes asked for (default `job:submit`, `job:status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `comfy.delivery.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComfyDelivery {
    /// Most images delivered per job (1–100, default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_images: Option<u64>,
    /// Largest image delivered, in bytes (default 50 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `comfy.media.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComfyMedia {
    /// How long a link to a job output lasts, in seconds (1 s … 7 days, default a day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) const COMFY_KEYS: &[&str] = &["templatesDir", "workers", "delivery", "media", "commands"];
const WORKER_KEYS: &[&str] = &["name", "url", "mode", "adminToken", "obsToken", "device", "maxConcurrent", "weight"];
const DEVICE_KEYS: &[&str] = &["id", "token", "scopes"];
const DELIVERY_KEYS: &[&str] = &["maxImages", "maxBytes"];
const MEDIA_KEYS: &[&str] = &["ttlSeconds"];

pub(crate) fn comfy(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Option<ComfySection>> {
    let mut out = ComfySection::default();
    let obj = d.open_object(v, p, COMFY_KEYS, &[], &mut out.extra)?;
    d.field(obj, p, "templatesDir", &mut out.templates_dir, Decoder::opt_string);
    d.field(obj, p, "workers", &mut out.workers, comfy_workers);
    d.field(obj, p, "delivery", &mut out.delivery, |d, v, p| {
        let mut out = ComfyDelivery::default();
        let obj = d.open_object(v, p, DELIVERY_KEYS, &[], &mut out.extra)?;
        d.field(obj, p, "maxImages", &mut out.max_images, |d, v, p| {
            d.integer(v, p, 0, u64::MAX, "a whole number of images").map(Some)
        });
        d.field(obj, p, "maxBytes", &mut out.max_bytes, |d, v, p| {
            d.integer(v, p, 0, u64::MAX, "a whole number of bytes").map(Some)
        });
        Some(out)
    });
    d.field(obj, p, "media", &mut out.media, |d, v, p| {
        let mut out = ComfyMedia::default();
        let obj = d.open_object(v, p, MEDIA_KEYS, &[], &mut out.extra)?;
        d.field(obj, p, "ttlSeconds", &mut out.ttl_seconds, |d, v, p| {
            d.integer(v, p, 0, u64::MAX, "a whole number of seconds").map(Some)
        });
        Some(out)
    });
    if let Some(commands) = obj.get("commands") {
        out.commands = commands.clone();
    }
    Some(Some(out))
}

fn comfy_workers(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Vec<ComfyWorker>> {
    let Value::Array(items) = v else {
        return d.fail(p, format!("expected an array [ … ], found {}", kind(v)));
    };
    let mut workers: Vec<ComfyWorker> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = p.index(i);
        let Some(worker) = comfy_worker(d, item, &at, i) else { continue };
        if workers.iter().any(|w| w.name == worker.name) {
            d.fail::<()>(&at.child("name"), format!("\"{}\" is used twice; worker names must be unique", worker.name));
            continue;
        }
        workers.push(worker);
    }
    Some(workers)
}

fn comfy_worker(d: &mut Decoder, v: &Value, p: &KeyPath, index: usize) -> Option<ComfyWorker> {
    let mut out = ComfyWorker { name: format!("worker-{}", index + 1), ..ComfyWorker::default() };
    let obj = d.open_object(v, p, WORKER_KEYS, &[], &mut out.extra)?;
    let before = d.issues.len();
    d.field(obj, p, "name", &mut out.name, Decoder::string);
    match obj.get("url") {
        Some(Value::String(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            out.url.clone_from(url);
        }
        _ => {
            d.fail::<()>(
                &p.child("url"),
                "give the ComfyUI server's base URL, e.g. \"http://127.0.0.1:8188\"".to_owned(),
            );
        }
    }
    d.field(obj, p, "mode", &mut out.mode, |d, v, p| match v {
        Value::String(m) if m == "comfyui" => Some(WorkerMode::Comfyui),
        Value::String(m) if m == "openclaw" => Some(WorkerMode::Openclaw),
        other => {
            let shown = match other {
                Value::String(m) => format!("\"{m}\""),
                other => describe(other),
            };
            d.fail(
                p,
                format!(
                    "{shown} is not a worker mode; use \"comfyui\" (native ComfyUI) or \"openclaw\" (ComfyUI \
                     with the ComfyUI-OpenClaw extension)"
                ),
            )
        }
    });
    d.field(obj, p, "adminToken", &mut out.admin_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "obsToken", &mut out.obs_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "device", &mut out.device, |d, v, p| {
        if !v.is_object() {
            return d.fail(
                p,
                "must be an object like {id: \"clawgate\", token: {env: \"OPENCLAW_BRIDGE_DEVICE_TOKEN\"}}".to_owned(),
            );
        }
        let mut out = ComfyDevice::default();
        let obj = d.open_object(v, p, DEVICE_KEYS, &[], &mut out.extra)?;
        match obj.get("id") {
            Some(Value::String(id)) if !id.is_empty() => out.id.clone_from(id),
            _ => return d.fail(&p.child("id"), "give the device id the extension knows".to_owned()),
        }
        d.field(obj, p, "token", &mut out.token, |d, v, p| secret(d, v, p).map(Some));
        if out.token.is_none() {
            return d.fail(
                &p.child("token"),
                "give the device token (OPENCLAW_BRIDGE_DEVICE_TOKEN on the extension)".to_owned(),
            );
        }
        d.field(obj, p, "scopes", &mut out.scopes, |d, v, p| d.strings(v, p).map(Some));
        Some(Some(out))
    });
    d.field(obj, p, "maxConcurrent", &mut out.max_concurrent, |d, v, p| {
        d.integer(v, p, 0, u64::MAX, "a whole number of jobs").map(Some)
    });
    d.field(obj, p, "weight", &mut out.weight, |d, v, p| match d.number(v, p)? {
        w if w > 0.0 && w.is_finite() => Some(Some(w)),
        _ => d.fail(p, "must be a positive number".to_owned()),
    });
    if d.issues.len() == before && out.mode == WorkerMode::Openclaw && out.admin_token.is_none() && out.device.is_none()
    {
        d.fail::<()>(
            p,
            "mode \"openclaw\" needs adminToken (the extension's OPENCLAW_ADMIN_TOKEN) to fire templates, or \
             device {id, token} for its bridge API"
                .to_owned(),
        );
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// hooks

/// `hooks.*`: inbound webhooks (`POST <path>/wake`, `POST <path>/agent`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HooksSection {
    /// Whether the hooks are served (they also need a token).
    pub enabled: bool,
    /// URL path of the hooks (default `/hooks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The token hook callers send (`Authorization: Bearer` or `x-openclaw-token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Agents a hook may target (`"*"`: any); unset: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_agent_ids: Option<Vec<String>>,
    /// The session of hook runs that name none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_session_key: Option<String>,
    /// Whether a hook request may name its session.
    pub allow_request_session_key: bool,
    /// Prefixes a requested session key must have; unset: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_session_key_prefixes: Option<Vec<String>>,
    /// OpenClaw keys clawgate does not use (`mappings`, `presets`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) const HOOKS_KEYS: &[&str] = &[
    "enabled",
    "path",
    "token",
    "allowedAgentIds",
    "defaultSessionKey",
    "allowRequestSessionKey",
    "allowedSessionKeyPrefixes",
];

pub(crate) fn hooks(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<HooksSection> {
    let mut out = HooksSection::default();
    let obj = d.open_object(v, p, HOOKS_KEYS, &[], &mut out.extra)?;
    d.field(obj, p, "enabled", &mut out.enabled, Decoder::boolean);
    d.field(obj, p, "path", &mut out.path, Decoder::opt_string);
    d.field(obj, p, "token", &mut out.token, optional_secret);
    d.field(obj, p, "allowedAgentIds", &mut out.allowed_agent_ids, |d, v, p| d.strings(v, p).map(Some));
    d.field(obj, p, "defaultSessionKey", &mut out.default_session_key, Decoder::opt_string);
    d.field(obj, p, "allowRequestSessionKey", &mut out.allow_request_session_key, Decoder::boolean);
    d.field(obj, p, "allowedSessionKeyPrefixes", &mut out.allowed_session_key_prefixes, |d, v, p| {
        d.strings(v, p).map(Some)
    });
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// cron, tools

/// `cron.*`. clawgate keeps its jobs in the state database (`cron.add` …) and reads no key
/// here; OpenClaw's (`enabled`, `store`, `maxConcurrentRuns`, …) are kept as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct CronSection {
    /// OpenClaw keys, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tools.*`. clawgate's agent tools have no policy keys yet; OpenClaw's (`profile`, `allow`,
/// `deny`, …) are kept as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ToolsSection {
    /// OpenClaw keys, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) fn cron(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<CronSection> {
    let mut out = CronSection::default();
    d.open_object(v, p, &[], &[], &mut out.extra)?;
    Some(out)
}

pub(crate) fn tools(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ToolsSection> {
    let mut out = ToolsSection::default();
    d.open_object(v, p, &[], &[], &mut out.extra)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::{Config, ConfigError, parse_str};

    fn issues(text: &str) -> Vec<String> {
        match parse_str(text, Path::new("c.json5")) {
            Err(ConfigError::Invalid { issues }) => issues.iter().map(ToString::to_string).collect(),
            other => panic!("expected issues, got {other:?}"),
        }
    }

    #[test]
    fn openclaw_keys_clawgate_does_not_read_are_kept_not_refused() {
        let text = r#"{
          agents: { defaults: { workspace: "~/w", models: { "a/b": {} }, model: { primary: "a/b", fallbacks: ["c/d"] } },
                    list: [{ id: "main", identity: { name: "x" } }] },
          models: { mode: "merge", providers: { p: { baseUrl: "http://h/v1", models: [{ id: "m", cost: {} }] } } },
          session: { scope: "per-sender" },
          hooks: { mappings: [] },
          cron: { enabled: true, store: "x" },
          tools: { profile: "coding" },
        }"#;
        let loaded = parse_str(text, Path::new("c.json5")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = &loaded.config;
        assert_eq!(c.agents.defaults.extra["workspace"], "~/w");
        assert_eq!(c.agents.defaults.model.as_ref().unwrap().primary.as_deref(), Some("a/b"));
        assert_eq!(c.models.extra["mode"], "merge");
        assert_eq!(c.cron.extra["store"], "x");
        assert_eq!(c.tools.extra["profile"], "coding");
        // Written back whole.
        let shown = serde_json::to_value(c).unwrap();
        assert_eq!(shown["agents"]["list"][0]["identity"]["name"], "x");
        assert_eq!(shown["session"]["scope"], "per-sender");
    }

    #[test]
    fn a_likely_typo_among_kept_keys_is_a_warning_with_its_place() {
        let loaded =
            parse_str("{\n  agents: {\n    defaults: { systemPromt: 'x' },\n  },\n}", Path::new("c.json5")).unwrap();
        let warning = loaded.warnings[0].to_string();
        assert!(warning.starts_with("c.json5:3:17: agents.defaults.systemPromt: unknown key"), "{warning}");
        assert!(warning.contains("did you mean \"systemPrompt\""), "{warning}");
    }

    #[test]
    fn section_errors_are_all_collected_with_file_line_column_and_key() {
        let all = issues(
            "{\n  agents: { defaults: { timeoutSeconds: '10' }, list: [{ name: 'x' }, { id: 'a' }, { id: 'a' }] },\n  \
             hooks: { enabled: 'yes' },\n  comfy: { workers: [{ url: 'ftp://x' }, { url: 'http://y', mode: 'sidecar' }] },\n  \
             models: { providers: { p: { apiKey: 5 } } },\n  session: { maxTranscriptEntries: -1 },\n}",
        );
        for want in [
            "c.json5:2:41: agents.defaults.timeoutSeconds: expected a whole number of seconds, found string",
            "c.json5:2:56: agents.list[0].id: required",
            "agents.list[2].id: duplicate agent id \"a\"",
            "c.json5:3:21: hooks.enabled: expected true or false",
            "comfy.workers[0].url: give the ComfyUI server's base URL",
            "comfy.workers[1].mode: \"sidecar\" is not a worker mode",
            "models.providers.p.apiKey: expected a string, {\"env\": \"NAME\"} or {\"file\": \"path\"}, found a number",
            "session.maxTranscriptEntries:",
        ] {
            assert!(all.iter().any(|i| i.contains(want)), "missing {want:?} in {all:#?}");
        }
    }

    #[test]
    fn secrets_in_sections_are_typed_and_never_shown() {
        let c = Config::from_value(&json!({
            "hooks": {"token": "hook-secret-1"},
            "models": {"providers": {"p": {"apiKey": "sk-secret-2", "headers": {"X-Key": "hdr-secret-3"}}}},
            "comfy": {"workers": [{"url": "http://u:pw-secret-4@c", "mode": "openclaw", "adminToken": "adm-secret-5"}]}
        }))
        .unwrap();
        assert_eq!(c.hooks.token, Some(Secret::Plain("hook-secret-1".into())));
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        for secret in ["hook-secret-1", "sk-secret-2", "hdr-secret-3", "pw-secret-4", "adm-secret-5"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // An empty key means none (OpenClaw configs write `apiKey: ""` for local servers).
        let c = Config::from_value(&json!({"models": {"providers": {"p": {"apiKey": ""}}}})).unwrap();
        assert_eq!(c.models.providers["p"].api_key, None);
    }
}
