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

use crate::decode::{Decoder, describe, kind, secret, suggestion};
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
    /// Characters of a turn's client `context` the model reads at most (default 8000); past it
    /// the context is cut and the model is told so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_max_chars: Option<u64>,
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
const AGENT_DEFAULTS_KEYS: &[&str] = &["model", "systemPrompt", "timeoutSeconds", "contextMaxChars"];
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
    d.field(obj, p, "contextMaxChars", &mut out.context_max_chars, |d, v, p| {
        d.integer(v, p, 0, 1_000_000, "a number of characters (0 to 1000000)").map(Some)
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
    /// The price of each model that has one (`models[].cost`), by model id. Decoded from
    /// `models` (which stays as written, so this is not serialised twice).
    #[serde(skip)]
    pub costs: BTreeMap<String, ModelCost>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `models.providers.<id>.models[].cost`: what a model costs, in **USD per million tokens**
/// (upstream's unit) for each token bucket. A field left out costs 0 once any is given;
/// `cost: {}` (or no `cost`) means "no price known", which is upstream's "inherit the catalog"
/// — clawgate has no catalog, so such a model's usage is reported without a cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCost {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: f64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: f64,
}

impl ModelCost {
    /// The cost in USD of these token counts at this price.
    pub fn usd(&self, input: u64, output: u64, cache_read: u64, cache_write: u64) -> f64 {
        (input as f64 * self.input
            + output as f64 * self.output
            + cache_read as f64 * self.cache_read
            + cache_write as f64 * self.cache_write)
            / 1_000_000.0
    }
}

pub(crate) const MODELS_KEYS: &[&str] = &["providers"];
const PROVIDER_KEYS: &[&str] = &["baseUrl", "api", "apiKey", "authHeader", "headers", "models"];
const PROVIDER_MODEL_KEYS: &[&str] =
    &["id", "name", "contextWindow", "maxTokens", "input", "reasoning", "headers", "compat", "cost"];
const PROVIDER_MODEL_UPSTREAM: &[&str] = &[];
const MODEL_COST_KEYS: &[&str] = &["input", "output", "cacheRead", "cacheWrite"];
/// Tiers select a rate per request by its prompt size; clawgate sums turns before pricing, so
/// a tiered model is reported without a cost rather than priced wrongly.
const MODEL_COST_UPSTREAM: &[&str] = &["tieredPricing"];

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
    let mut costs = BTreeMap::new();
    d.field(obj, p, "models", &mut out.models, |d, v, p| {
        d.list(v, p, |d, v, p| {
            let mut extra = Map::new();
            let obj = d.open_object(v, p, PROVIDER_MODEL_KEYS, PROVIDER_MODEL_UPSTREAM, &mut extra)?;
            let mut id = None;
            d.field(obj, p, "id", &mut id, Decoder::opt_string);
            let Some(id) = id.filter(|id| !id.is_empty()) else {
                return d.fail(&p.child("id"), "is required and must be a non-empty string".to_owned());
            };
            let mut cost = None;
            d.field(obj, p, "cost", &mut cost, model_cost);
            if let Some(cost) = cost {
                costs.insert(id, cost);
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
    out.costs = costs;
    Some(out)
}

/// `cost`: `Some` when it gives at least one flat rate and no `tieredPricing`.
fn model_cost(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Option<ModelCost>> {
    let mut extra = Map::new();
    let obj = d.open_object(v, p, MODEL_COST_KEYS, MODEL_COST_UPSTREAM, &mut extra)?;
    let mut cost = ModelCost::default();
    let mut given = false;
    for (key, slot) in [
        ("input", &mut cost.input),
        ("output", &mut cost.output),
        ("cacheRead", &mut cost.cache_read),
        ("cacheWrite", &mut cost.cache_write),
    ] {
        let Some(raw) = obj.get(key).filter(|v| !v.is_null()) else { continue };
        let at = p.child(key);
        let rate = d.number(raw, &at)?;
        if rate < 0.0 {
            return d.fail(&at, format!("must be 0 or more (USD per million tokens), found {rate}"));
        }
        *slot = rate;
        given = true;
    }
    Some((given && !extra.contains_key("tieredPricing")).then_some(cost))
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
    /// Tokens of ComfyUI workers that join by themselves (`clawgate worker --token …`): a
    /// connection presenting one may call the `comfy.worker.*` methods and nothing else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_tokens: Vec<Secret>,
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

pub(crate) const COMFY_KEYS: &[&str] = &["templatesDir", "workers", "workerTokens", "delivery", "media", "commands"];
const WORKER_KEYS: &[&str] = &["name", "url", "mode", "adminToken", "obsToken", "device", "maxConcurrent", "weight"];
const DEVICE_KEYS: &[&str] = &["id", "token", "scopes"];
const DELIVERY_KEYS: &[&str] = &["maxImages", "maxBytes"];
const MEDIA_KEYS: &[&str] = &["ttlSeconds"];

pub(crate) fn comfy(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Option<ComfySection>> {
    let mut out = ComfySection::default();
    let obj = d.open_object(v, p, COMFY_KEYS, &[], &mut out.extra)?;
    d.field(obj, p, "templatesDir", &mut out.templates_dir, Decoder::opt_string);
    d.field(obj, p, "workers", &mut out.workers, comfy_workers);
    d.field(obj, p, "workerTokens", &mut out.worker_tokens, |d, v, p| {
        let Value::Array(items) = v else {
            return d.fail(p, format!("expected an array of tokens [ … ], found {}", kind(v)));
        };
        Some(items.iter().enumerate().filter_map(|(i, item)| secret(d, item, &p.index(i))).collect())
    });
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

// ---------------------------------------------------------------------------------------------
// channels

/// `channels.*`: the chat channels, shaped like OpenClaw's. In each channel the top-level keys
/// are the `default` account; `accounts.<id>` entries inherit them and override what they set.
///
/// Channels this build has no adapter for (and OpenClaw's `defaults`) are kept in `extra`;
/// starting the channels refuses the unknown ones (`clawgate_channels::accounts_from_config`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsSection {
    /// Telegram bots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<ChannelSection>,
    /// Discord bots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord: Option<ChannelSection>,
    /// The gateway's own web chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webchat: Option<ChannelSection>,
    /// LINE Official Accounts (Messaging API webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<ChannelSection>,
    /// WhatsApp Cloud API numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<ChannelSection>,
    /// Slack apps (Socket Mode or the Events API over HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<ChannelSection>,
    /// Backends that chat over signed HTTP webhooks (inbound POST, replies POSTed back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelSection>,
    /// Other keys (OpenClaw's `defaults`, channels this build has no adapter for), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChannelsSection {
    /// The channels this build has an adapter for, by name, in start order.
    #[must_use]
    pub fn known(&self) -> [(&'static str, Option<&ChannelSection>); 7] {
        [
            ("telegram", self.telegram.as_ref()),
            ("discord", self.discord.as_ref()),
            ("webchat", self.webchat.as_ref()),
            ("line", self.line.as_ref()),
            ("whatsapp", self.whatsapp.as_ref()),
            ("slack", self.slack.as_ref()),
            ("webhook", self.webhook.as_ref()),
        ]
    }
}

/// `channels.<name>`: the `default` account's settings at the top level, other accounts under
/// `accounts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSection {
    /// The top-level settings: the `default` account, and what every account inherits.
    #[serde(flatten)]
    pub base: ChannelAccount,
    /// More accounts by id; each inherits the top-level settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<BTreeMap<String, ChannelAccount>>,
    /// OpenClaw's default account id (not used by clawgate: `default` is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_account: Option<String>,
}

/// The settings of one channel account as written; unset ones inherit (see [`ChannelSection`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    /// `false` keeps the account configured but stopped (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The bot token (Telegram's name for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<Secret>,
    /// The bot token (Discord's name for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Who may talk to the bot in direct messages (default `pairing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_policy: Option<DmPolicy>,
    /// Allowed DM senders: user ids, `@usernames`, `"*"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_from: Option<Vec<String>>,
    /// Which groups the bot answers in (default `allowlist`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_policy: Option<GroupPolicy>,
    /// Allowed group senders (unset: anyone in an allowed group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_allow_from: Option<Vec<String>>,
    /// Telegram (and web chat): rules per group chat id (`"*"`: every group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, GroupSection>>,
    /// Discord: rules per guild id (`"*"`: every guild).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guilds: Option<BTreeMap<String, GroupSection>>,
    /// Answer in groups only when mentioned (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mention: Option<bool>,
    /// Inbound limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ChannelRateLimit>,
    /// The agent that answers (default: the default agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The platform API root (Telegram `https://api.telegram.org`, Discord's REST API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_root: Option<String>,
    /// Telegram: receive updates by webhook at this public URL instead of polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Telegram: the secret Telegram sends with each webhook call (1–256 of A-Z a-z 0-9 _ -).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// Telegram: the local path the webhook is served at (default `/telegram-webhook/<account>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// Telegram: long-poll timeout in seconds (1–50, default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_timeout_seconds: Option<u64>,
    /// Discord: the gateway WebSocket URL (`ws://` or `wss://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// LINE: the channel access token (`Authorization: Bearer` on every API call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_access_token: Option<Secret>,
    /// LINE: the channel secret, the key of the webhook signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_secret: Option<Secret>,
    /// WhatsApp: the Graph API access token (system-user token), sent as a bearer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// WhatsApp: the Meta app secret; webhooks are signed with it (`X-Hub-Signature-256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<Secret>,
    /// WhatsApp: the verify token typed into the Meta console for the GET handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<Secret>,
    /// WhatsApp: the business phone number's id (not the number itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    /// WhatsApp: the Graph API version in request paths (default `v24.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Slack: `socket` (Socket Mode, the default) or `http` (the Events API at `webhookPath`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Slack: the app-level token (`xapp-…`) that opens Socket Mode connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_token: Option<Secret>,
    /// Slack: the signing secret that signs Events API requests (HTTP mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret>,
    /// Slack, HTTP mode: the local path slash commands are POSTed to (default `/slack/commands`;
    /// `webhookPath` takes them too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands_path: Option<String>,
    /// Webhook channel: the HMAC-SHA256 key that signs both directions (inbound requests and
    /// the replies POSTed to `outboundUrl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Webhook channel: where replies are POSTed (an `http(s)://` URL of the backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_url: Option<String>,
    /// Webhook channel: the local path inbound messages are POSTed to (default
    /// `/webhook/<account>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Webhook channel: delivery attempts of one reply before it is dead-lettered (default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Webhook channel: the wait before the first retry, in ms (default 1000); it doubles
    /// (with jitter) up to `retryMaxMs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_base_ms: Option<u64>,
    /// Webhook channel: the longest wait between two attempts, in ms (default 300000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_max_ms: Option<u64>,
    /// Webhook channel: the longest reply text in one POST, in characters (default 4000);
    /// longer replies are split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_text_chars: Option<u64>,
    /// Webhook channel: how long one POST to `outboundUrl` may take, in ms (default 10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Who may talk to the bot in direct messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; the owner approves it (`clawgate pairing approve`).
    #[default]
    Pairing,
    /// Only `allowFrom` (and approved pairings).
    Allowlist,
    /// Anyone.
    Open,
    /// No direct messages at all.
    Disabled,
}

impl DmPolicy {
    /// The values as written in the config.
    pub const NAMES: [&'static str; 4] = ["pairing", "allowlist", "open", "disabled"];
}

/// Which groups the bot answers in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    /// Any group the bot is in.
    Open,
    /// Only groups listed in `groups`/`guilds` (a `"*"` entry lists all).
    #[default]
    Allowlist,
    /// Never in groups.
    Disabled,
}

impl GroupPolicy {
    /// The values as written in the config.
    pub const NAMES: [&'static str; 3] = ["open", "allowlist", "disabled"];
}

/// Rules for one group (Telegram chat id) or guild (Discord), and its channels or topics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSection {
    /// `false` silences it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Discord's name for `enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<bool>,
    /// Answer only when mentioned; unset inherits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mention: Option<bool>,
    /// Senders allowed here; unset inherits `groupAllowFrom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_from: Option<Vec<String>>,
    /// Discord's name for `allowFrom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// Discord: rules per channel of the guild.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<BTreeMap<String, GroupSection>>,
    /// Telegram: rules per forum topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<BTreeMap<String, GroupSection>>,
    /// OpenClaw keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `channels.<name>.rateLimit`: inbound messages per minute; 0 disables a limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRateLimit {
    /// Messages one sender may send per minute (default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_sender_per_minute: Option<u64>,
    /// Messages one chat may send per minute (default 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_chat_per_minute: Option<u64>,
    /// Keys clawgate does not use, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) const CHANNELS_KEYS: &[&str] = &["telegram", "discord", "webchat", "line", "whatsapp", "slack", "webhook"];
/// The keys only webhook-channel accounts have.
const WEBHOOK_KEYS: &[&str] =
    &["secret", "outboundUrl", "path", "maxAttempts", "retryBaseMs", "retryMaxMs", "maxTextChars", "timeoutMs"];
/// The keys only LINE accounts have.
const LINE_KEYS: &[&str] = &["channelAccessToken", "channelSecret"];
/// The keys only Slack accounts have (its per-channel rules are under `channels`).
const SLACK_KEYS: &[&str] = &["mode", "appToken", "signingSecret", "commandsPath"];
/// The keys of an account every channel reads; `groups` or `guilds` is added per channel.
const CHANNEL_ACCOUNT_KEYS: &[&str] = &[
    "enabled",
    "botToken",
    "token",
    "dmPolicy",
    "allowFrom",
    "groupPolicy",
    "groupAllowFrom",
    "requireMention",
    "rateLimit",
    "agent",
    "apiRoot",
    "webhookUrl",
    "webhookSecret",
    "webhookPath",
    "pollTimeoutSeconds",
    "gatewayUrl",
    "accessToken",
    "appSecret",
    "verifyToken",
    "phoneNumberId",
    "apiVersion",
];
/// The keys only the top level of a channel has.
const CHANNEL_TOP_KEYS: &[&str] = &["accounts", "defaultAccount"];
const GROUP_KEYS: &[&str] = &["enabled", "allow", "requireMention", "allowFrom", "users", "channels", "topics"];
const CHANNEL_RATE_KEYS: &[&str] = &["perSenderPerMinute", "perChatPerMinute"];
/// OpenClaw channel keys near a clawgate one that must not be taken for its typo.
const CHANNEL_UPSTREAM: &[&str] = &[
    "name",
    "dms",
    "webhookHost",
    "webhookPort",
    "streaming",
    "proxy",
    "commands",
    "configWrites",
    "historyLimit",
    "dmHistoryLimit",
    "textChunkLimit",
    "mediaMaxMb",
    "replyToMode",
    "actions",
    "retry",
    "network",
    "timeoutSeconds",
    "chunkMode",
    "blockStreaming",
    "linkPreview",
    "allowBots",
    "intents",
    "responsePrefix",
    "groups",
    "guilds",
];
const GROUP_UPSTREAM: &[&str] = &["systemPrompt", "skills", "tools", "toolsBySender", "slug", "groupPolicy", "roles"];

pub(crate) fn channels(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<ChannelsSection> {
    let mut out = ChannelsSection::default();
    let obj = d.open_object(v, p, CHANNELS_KEYS, &["defaults"], &mut out.extra)?;
    d.field(obj, p, "telegram", &mut out.telegram, |d, v, p| channel(d, v, p, "groups", &[]).map(Some));
    d.field(obj, p, "discord", &mut out.discord, |d, v, p| channel(d, v, p, "guilds", &[]).map(Some));
    d.field(obj, p, "webchat", &mut out.webchat, |d, v, p| channel(d, v, p, "groups", &[]).map(Some));
    d.field(obj, p, "line", &mut out.line, |d, v, p| channel(d, v, p, "groups", LINE_KEYS).map(Some));
    d.field(obj, p, "whatsapp", &mut out.whatsapp, |d, v, p| channel(d, v, p, "groups", &[]).map(Some));
    d.field(obj, p, "slack", &mut out.slack, |d, v, p| channel(d, v, p, "channels", SLACK_KEYS).map(Some));
    d.field(obj, p, "webhook", &mut out.webhook, |d, v, p| channel(d, v, p, "groups", WEBHOOK_KEYS).map(Some));
    Some(out)
}

/// One channel; `groups_key` is where its group rules are (`groups`, Discord `guilds`), `own`
/// the keys only this platform has.
fn channel(
    d: &mut Decoder,
    v: &Value,
    p: &KeyPath,
    groups_key: &'static str,
    own: &[&'static str],
) -> Option<ChannelSection> {
    let mut out = ChannelSection::default();
    let known: Vec<&str> = [CHANNEL_ACCOUNT_KEYS, CHANNEL_TOP_KEYS, &[groups_key], own].concat();
    let obj = d.open_object(v, p, &known, CHANNEL_UPSTREAM, &mut out.base.extra)?;
    account_fields(d, obj, p, groups_key, own, &mut out.base);
    d.field(obj, p, "accounts", &mut out.accounts, |d, v, p| {
        let Value::Object(accounts) = v else {
            return d.fail(p, format!("expected an object of account id → settings, found {}", kind(v)));
        };
        let known: Vec<&str> = [CHANNEL_ACCOUNT_KEYS, &[groups_key], own].concat();
        let mut out = BTreeMap::new();
        for (id, v) in accounts {
            let at = p.child(id);
            let mut account = ChannelAccount::default();
            let Some(obj) = d.open_object(v, &at, &known, CHANNEL_UPSTREAM, &mut account.extra) else { continue };
            account_fields(d, obj, &at, groups_key, own, &mut account);
            out.insert(id.clone(), account);
        }
        Some(Some(out))
    });
    d.field(obj, p, "defaultAccount", &mut out.default_account, Decoder::opt_string);
    Some(out)
}

fn account_fields(
    d: &mut Decoder,
    obj: &Map<String, Value>,
    p: &KeyPath,
    groups_key: &'static str,
    own: &[&'static str],
    out: &mut ChannelAccount,
) {
    let flag = |d: &mut Decoder, v: &Value, p: &KeyPath| d.boolean(v, p).map(Some);
    d.field(obj, p, "enabled", &mut out.enabled, flag);
    d.field(obj, p, "botToken", &mut out.bot_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "token", &mut out.token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "dmPolicy", &mut out.dm_policy, |d, v, p| {
        const ALL: [DmPolicy; 4] = [DmPolicy::Pairing, DmPolicy::Allowlist, DmPolicy::Open, DmPolicy::Disabled];
        let i =
            policy(d, v, p, &DmPolicy::NAMES, "a DM policy", "\"pairing\", \"allowlist\", \"open\" or \"disabled\"")?;
        ALL.get(i).copied().map(Some)
    });
    d.field(obj, p, "groupPolicy", &mut out.group_policy, |d, v, p| {
        const ALL: [GroupPolicy; 3] = [GroupPolicy::Open, GroupPolicy::Allowlist, GroupPolicy::Disabled];
        let i = policy(d, v, p, &GroupPolicy::NAMES, "a group policy", "\"open\", \"allowlist\" or \"disabled\"")?;
        ALL.get(i).copied().map(Some)
    });
    d.field(obj, p, "allowFrom", &mut out.allow_from, |d, v, p| id_list(d, v, p).map(Some));
    d.field(obj, p, "groupAllowFrom", &mut out.group_allow_from, |d, v, p| id_list(d, v, p).map(Some));
    let groups = if groups_key == "guilds" { &mut out.guilds } else { &mut out.groups };
    d.field(obj, p, groups_key, groups, |d, v, p| group_rules(d, v, p).map(Some));
    d.field(obj, p, "requireMention", &mut out.require_mention, flag);
    d.field(obj, p, "rateLimit", &mut out.rate_limit, |d, v, p| {
        let mut out = ChannelRateLimit::default();
        let obj = d.open_object(v, p, CHANNEL_RATE_KEYS, &[], &mut out.extra)?;
        let per_minute = |d: &mut Decoder, v: &Value, p: &KeyPath| {
            d.integer(v, p, 0, u64::MAX, "a whole number of messages per minute (0: no limit)").map(Some)
        };
        d.field(obj, p, "perSenderPerMinute", &mut out.per_sender_per_minute, per_minute);
        d.field(obj, p, "perChatPerMinute", &mut out.per_chat_per_minute, per_minute);
        Some(Some(out))
    });
    d.field(obj, p, "agent", &mut out.agent, Decoder::opt_string);
    d.field(obj, p, "apiRoot", &mut out.api_root, Decoder::opt_string);
    d.field(obj, p, "webhookUrl", &mut out.webhook_url, Decoder::opt_string);
    d.field(obj, p, "webhookSecret", &mut out.webhook_secret, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "webhookPath", &mut out.webhook_path, Decoder::opt_string);
    d.field(obj, p, "pollTimeoutSeconds", &mut out.poll_timeout_seconds, |d, v, p| {
        d.integer(v, p, 0, u64::MAX, "a whole number of seconds").map(Some)
    });
    d.field(obj, p, "gatewayUrl", &mut out.gateway_url, Decoder::opt_string);
    // Another platform's keys stay in `extra` as written.
    if own.contains(&"channelSecret") {
        d.field(obj, p, "channelAccessToken", &mut out.channel_access_token, |d, v, p| secret(d, v, p).map(Some));
        d.field(obj, p, "channelSecret", &mut out.channel_secret, |d, v, p| secret(d, v, p).map(Some));
    }
    d.field(obj, p, "accessToken", &mut out.access_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "appSecret", &mut out.app_secret, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "verifyToken", &mut out.verify_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "phoneNumberId", &mut out.phone_number_id, Decoder::opt_string);
    d.field(obj, p, "apiVersion", &mut out.api_version, Decoder::opt_string);
    d.field(obj, p, "mode", &mut out.mode, |d, v, p| {
        let i = policy(d, v, p, &["socket", "http"], "a Slack mode", "\"socket\" or \"http\"")?;
        ["socket", "http"].get(i).map(|m| Some((*m).to_owned()))
    });
    d.field(obj, p, "appToken", &mut out.app_token, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "signingSecret", &mut out.signing_secret, |d, v, p| secret(d, v, p).map(Some));
    if own.contains(&"commandsPath") {
        d.field(obj, p, "commandsPath", &mut out.commands_path, Decoder::opt_string);
    }
    if own.contains(&"outboundUrl") {
        webhook_fields(d, obj, p, out);
    }
}

/// The webhook channel's own keys, each checked where it is written.
fn webhook_fields(d: &mut Decoder, obj: &Map<String, Value>, p: &KeyPath, out: &mut ChannelAccount) {
    d.field(obj, p, "secret", &mut out.secret, |d, v, p| secret(d, v, p).map(Some));
    d.field(obj, p, "outboundUrl", &mut out.outbound_url, |d, v, p| {
        let url = d.string(v, p)?;
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Some(Some(url)),
            _ => d.fail(p, format!("{url:?} is not an http(s) URL; write the backend's address like \"https://app.example/clawgate/replies\"")),
        }
    });
    d.field(obj, p, "path", &mut out.path, |d, v, p| {
        let path = d.string(v, p)?;
        if path.starts_with('/') && path.len() > 1 && !path.contains(['?', '#', ' ']) {
            Some(Some(path))
        } else {
            d.fail(p, format!("{path:?} is not a path; write one starting with / like \"/webhook/app\""))
        }
    });
    d.field(obj, p, "maxAttempts", &mut out.max_attempts, |d, v, p| {
        d.integer(v, p, 1, 100, "a whole number of attempts from 1 to 100").map(Some)
    });
    let ms = |d: &mut Decoder, v: &Value, p: &KeyPath| {
        d.integer(v, p, 1, 86_400_000, "a whole number of milliseconds from 1 to 86400000").map(Some)
    };
    d.field(obj, p, "retryBaseMs", &mut out.retry_base_ms, ms);
    d.field(obj, p, "retryMaxMs", &mut out.retry_max_ms, ms);
    d.field(obj, p, "timeoutMs", &mut out.timeout_ms, ms);
    d.field(obj, p, "maxTextChars", &mut out.max_text_chars, |d, v, p| {
        d.integer(v, p, 1, 1_000_000, "a whole number of characters from 1 to 1000000").map(Some)
    });
}

/// A policy name; the message names every value (`use` lists them as the user writes them).
fn policy(d: &mut Decoder, v: &Value, p: &KeyPath, names: &[&str], what: &str, usage: &str) -> Option<usize> {
    match v {
        Value::String(text) => match names.iter().position(|n| n == text) {
            Some(i) => Some(i),
            None => d.fail(p, format!("\"{text}\" is not {what}; use {usage}{}", suggestion(text, names))),
        },
        other => d.fail(p, format!("{} is not {what}; use {usage}", describe(other))),
    }
}

/// Sender ids: user ids (strings or numbers), `@usernames` or `"*"`; strings are trimmed.
fn id_list(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<Vec<String>> {
    if !v.is_array() {
        return d.fail(p, "must be a list like [\"123456789\", \"@alice\"]".to_owned());
    }
    d.list(v, p, |d, v, p| match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => d.fail(p, "entries must be user ids (strings or numbers), @usernames or \"*\"".to_owned()),
    })
}

fn group_rules(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<BTreeMap<String, GroupSection>> {
    let Value::Object(rules) = v else {
        return d.fail(p, format!("must be an object of id → rules, found {}", kind(v)));
    };
    Some(rules.iter().filter_map(|(id, v)| Some((id.clone(), group_rule(d, v, &p.child(id))?))).collect())
}

fn group_rule(d: &mut Decoder, v: &Value, p: &KeyPath) -> Option<GroupSection> {
    if !v.is_object() {
        return d.fail(p, "must be an object like { requireMention: true }".to_owned());
    }
    let mut out = GroupSection::default();
    let obj = d.open_object(v, p, GROUP_KEYS, GROUP_UPSTREAM, &mut out.extra)?;
    let flag = |d: &mut Decoder, v: &Value, p: &KeyPath| d.boolean(v, p).map(Some);
    d.field(obj, p, "enabled", &mut out.enabled, flag);
    d.field(obj, p, "allow", &mut out.allow, flag);
    d.field(obj, p, "requireMention", &mut out.require_mention, flag);
    d.field(obj, p, "allowFrom", &mut out.allow_from, |d, v, p| id_list(d, v, p).map(Some));
    d.field(obj, p, "users", &mut out.users, |d, v, p| id_list(d, v, p).map(Some));
    d.field(obj, p, "channels", &mut out.channels, |d, v, p| group_rules(d, v, p).map(Some));
    d.field(obj, p, "topics", &mut out.topics, |d, v, p| group_rules(d, v, p).map(Some));
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
    fn model_costs_are_typed_usd_per_million_tokens() {
        let text = r#"{ models: { providers: { p: { baseUrl: "http://h/v1", models: [
            { id: "full", cost: { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 } },
            { id: "partial", cost: { output: 2 } },
            { id: "empty", cost: {} },
            { id: "none" },
            { id: "tiered", cost: { input: 1, output: 2, tieredPricing: [] } },
        ] } } } }"#;
        let loaded = parse_str(text, Path::new("c.json5")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let costs = &loaded.config.models.providers["p"].costs;
        let full = ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
        assert_eq!(costs["full"], full);
        assert_eq!(costs["partial"], ModelCost { output: 2.0, ..ModelCost::default() });
        // No rate given, or tiers clawgate cannot apply to summed turns: no price.
        assert_eq!(costs.keys().collect::<Vec<_>>(), ["full", "partial"]);
        // 1M input + 1M output + 1M cache reads + 1M cache writes.
        assert!((full.usd(1_000_000, 1_000_000, 1_000_000, 1_000_000) - 22.05).abs() < 1e-9);
        // Written back as it was.
        let shown = serde_json::to_value(&loaded.config).unwrap();
        assert_eq!(shown["models"]["providers"]["p"]["models"][0]["cost"]["cacheWrite"], 3.75);
    }

    #[test]
    fn a_bad_model_cost_is_an_issue_at_its_key() {
        let found =
            issues(r#"{ models: { providers: { p: { models: [{ id: "m", cost: { input: "3", output: -1 } }] } } } }"#);
        assert!(
            found.iter().any(|i| i.contains("models.providers.p.models[0].cost.input: expected a number")),
            "{found:?}"
        );
        let found = issues(r#"{ models: { providers: { p: { models: [{ id: "m", cost: { output: -1 } }] } } } }"#);
        assert!(found.iter().any(|i| i.contains("cost.output: must be 0 or more")), "{found:?}");
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
    #[test]
    fn a_bad_channel_value_is_an_issue_at_its_file_line_column_and_key() {
        let all = issues(
            "{\n  channels: {\n    telegram: {\n      botToken: 'x',\n      dmPolicy: 'friends',\n      \
             accounts: { work: { allowFrom: [true], rateLimit: { perSenderPerMinute: -1 } } },\n    },\n    \
             discord: { guilds: { g: { channels: { c: 'on' } } } },\n  },\n}",
        );
        for want in [
            "c.json5:5:17: channels.telegram.dmPolicy: \"friends\" is not a DM policy; use \"pairing\", \"allowlist\", \
             \"open\" or \"disabled\"",
            "c.json5:6:39: channels.telegram.accounts.work.allowFrom[0]: entries must be user ids",
            "channels.telegram.accounts.work.rateLimit.perSenderPerMinute: -1 is negative",
            "channels.discord.guilds.g.channels.c: must be an object like { requireMention: true }",
        ] {
            assert!(all.iter().any(|i| i.contains(want)), "missing {want:?} in {all:#?}");
        }
    }

    #[test]
    fn channel_keys_clawgate_does_not_read_are_kept_and_written_back() {
        let text = r#"{
          channels: {
            defaults: { groupPolicy: "open" },
            slack: { botToken: "xoxb-secret-1" },
            telegram: { botToken: "123:secret-2", streaming: "partial", allowFrom: [42, " @al "],
                        groups: { "-100": { requireMention: false, skills: ["a"] } },
                        accounts: { work: { token: "t", textChunkLimit: 2000 } } },
          },
        }"#;
        let loaded = parse_str(text, Path::new("c.json5")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let channels = &loaded.config.channels;
        let telegram = channels.telegram.as_ref().unwrap();
        assert_eq!(telegram.base.extra["streaming"], "partial");
        assert_eq!(telegram.base.allow_from.as_deref(), Some(&["42".to_owned(), "@al".to_owned()][..]));
        assert_eq!(telegram.base.groups.as_ref().unwrap()["-100"].extra["skills"], json!(["a"]));
        assert_eq!(telegram.accounts.as_ref().unwrap()["work"].extra["textChunkLimit"], 2000);
        assert_eq!(channels.extra["defaults"]["groupPolicy"], "open");
        let shown = serde_json::to_value(&loaded.config).unwrap();
        assert_eq!(shown["channels"]["telegram"]["streaming"], "partial");
        assert_eq!(shown["channels"]["telegram"]["accounts"]["work"]["textChunkLimit"], 2000);
        assert_eq!(shown["channels"]["telegram"]["groups"]["-100"]["requireMention"], false);
        assert_eq!(shown["channels"]["telegram"]["dmPolicy"], Value::Null, "unset keys are not written");
        let text = format!("{shown} {:?}", loaded.config);
        for secret in ["xoxb-secret-1", "123:secret-2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn a_likely_typo_of_a_channel_key_is_a_warning_with_did_you_mean() {
        let loaded = parse_str(
            "{\n  channels: {\n    telegram: { botToken: 'x', webhookSecert: 's' },\n    telegrm: {},\n  },\n}",
            Path::new("c.json5"),
        )
        .unwrap();
        let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings.iter().any(|w| w.starts_with("c.json5:3:32: channels.telegram.webhookSecert: unknown key")
                && w.contains("did you mean \"webhookSecret\"")),
            "{warnings:#?}"
        );
        assert!(warnings.iter().any(|w| w.contains("channels.telegrm") && w.contains("\"telegram\"")), "{warnings:#?}");
        assert_eq!(loaded.config.channels.telegram.as_ref().unwrap().base.extra["webhookSecert"], "s");
    }

    #[test]
    fn whatsapp_needs_an_https_public_url_too() {
        let text = "{\n  gateway: {\n    publicUrl: 'http://bot.example.com',\n  },\n  channels: {\n    whatsapp: { accessToken: 'tok', appSecret: 'sec', phoneNumberId: '123', verifyToken: 'v' },\n  },\n}";
        let got = issues(text);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with(
                "c.json5:3:16: gateway.publicUrl: WhatsApp needs an HTTPS public URL: set gateway.publicUrl to https://"
            ),
            "{got:#?}"
        );
        assert!(parse_str(&text.replace("http://", "https://"), Path::new("c.json5")).is_ok());
    }

    #[test]
    fn line_needs_an_https_public_url_and_its_secrets_are_redacted() {
        let text = "{\n  gateway: {\n    publicUrl: 'http://bot.example.com',\n  },\n  channels: {\n    line: { channelAccessToken: 'tok-canary', channelSecret: 'sec-canary' },\n  },\n}";
        let got = issues(text);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with(
                "c.json5:3:16: gateway.publicUrl: LINE needs an HTTPS public URL: set gateway.publicUrl to https://"
            ),
            "{got:#?}"
        );
        let ok = parse_str(&text.replace("http://", "https://"), Path::new("c.json5")).unwrap();
        assert_eq!(ok.config.gateway.public_url.as_deref(), Some("https://bot.example.com"));
        let line = ok.config.channels.line.as_ref().unwrap();
        assert!(line.base.channel_secret.is_some() && line.base.channel_access_token.is_some());
        let shown = serde_json::to_value(&ok.config).unwrap();
        let raw = crate::redacted(
            &json!({"channels": {"line": {"channelAccessToken": "tok-canary", "channelSecret": "sec-canary"}}}),
        );
        assert!(!raw.to_string().contains("canary"), "{raw}");
        assert!(!shown.to_string().contains("canary"), "{shown}");
        // Plain HTTP is fine without a platform that needs HTTPS; LINE keys stay LINE's.
        let plain = parse_str("{gateway: {publicUrl: 'http://10.0.0.2:8080/'}}", Path::new("c.json5")).unwrap();
        assert_eq!(plain.config.gateway.public_url.as_deref(), Some("http://10.0.0.2:8080"));
        let tg =
            parse_str("{channels: {telegram: {botToken: 'x', channelSecret: 's'}}}", Path::new("c.json5")).unwrap();
        let tg = tg.config.channels.telegram.unwrap();
        assert!(tg.base.channel_secret.is_none() && tg.base.extra.contains_key("channelSecret"), "{tg:?}");
        assert!(issues("{gateway: {publicUrl: 'bot.example.com'}}")[0].contains("https://bot.example.com"));
    }
}
