//! `config.get`, `config.schema`, `config.set`, `config.patch`, `config.apply`: params and
//! results (schema `Config*Params`, `ConfigSchemaResponse`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AnyParams;

/// `config.get` takes no params and ignores any (the schema's `ConfigGetParams` is a closed
/// `{}`, but clawgate never refused extras here).
pub type ConfigGetParams = AnyParams;

/// `config.schema` takes no params and ignores any.
pub type ConfigSchemaParams = AnyParams;

/// `config.set {raw, baseHash?}`, `config.apply {raw, baseHash?, sessionKey?, deliveryContext?,
/// note?, restartDelayMs?}` and `config.patch {…, replacePaths?}`: one shape, unknown fields
/// ignored (as always). A wrong type is refused by serde, with the text clients have always seen
/// (`invalid config.set params: missing field `raw``).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct WriteParams")]
pub struct ConfigWriteParams {
    /// The config (set, apply) or the JSON merge patch (patch), as JSON5 text; not blank.
    pub raw: String,
    /// The `hash` of the config the change was made against; refused when it moved on.
    #[serde(default)]
    pub base_hash: Option<String>,
    /// `config.patch`: keys whose value the patch replaces instead of merging into.
    #[serde(default)]
    pub replace_paths: Option<Vec<String>>,
    /// Accepted for upstream clients; clawgate applies changes itself.
    #[serde(default)]
    pub session_key: Option<String>,
    /// Accepted for upstream clients (where to report a restart); unused. Open: upstream's
    /// `{channel, to, accountId, threadId}` is only passed through there.
    #[serde(default)]
    pub delivery_context: Option<Value>,
    /// Accepted for upstream clients; unused.
    #[serde(default)]
    pub note: Option<String>,
    /// Accepted for upstream clients; clawgate does not restart itself.
    #[serde(default)]
    pub restart_delay_ms: Option<u64>,
}

/// `config.set`.
pub type ConfigSetParams = ConfigWriteParams;

/// `config.patch`.
pub type ConfigPatchParams = ConfigWriteParams;

/// `config.apply`.
pub type ConfigApplyParams = ConfigWriteParams;

/// A problem with the config in force (clawgate refuses invalid configs, so `config.get` never
/// has one to report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    /// The key.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// `config.get` → the config in force, secrets redacted, with the hash to pass as `baseHash`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigGetResult {
    /// Whether the file exists.
    pub exists: bool,
    /// Always `true` (an invalid config is never in force).
    pub valid: bool,
    /// SHA-256 of the file's text.
    pub hash: String,
    /// The same (upstream's newer name).
    pub config_revision_hash: String,
    /// The config document, secrets redacted: an open object on purpose (it is the user's file).
    pub config: Value,
    /// `config` pretty-printed.
    pub raw: String,
    /// Always empty.
    pub issues: Vec<ConfigIssue>,
    /// The file's path, for admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `config.schema` → upstream's `ConfigSchemaResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSchemaResult {
    /// The config's JSON schema: open on purpose (a JSON schema document).
    pub schema: Value,
    /// Per-key hints for editors (`label`, `help`, `sensitive`, …), by key path.
    pub ui_hints: Map<String, Value>,
    /// The gateway's version.
    pub version: String,
    /// When the schema was generated (the gateway's start, RFC 3339).
    pub generated_at: String,
}

/// One changed key of a config write, what applying it takes, and what applying it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChangeEntry {
    /// The key path (`gateway.port`).
    pub path: String,
    /// `hot`, `restart-subsystem` or `restart-process`.
    pub class: String,
    /// What happened to it: `applied` (in force now), `restarted` (its subsystem restarted
    /// with it), `restartRequired` (in force after a restart of clawgate) or `failed` (the
    /// previous value stays in force; see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why it failed (`outcome: "failed"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A changed key that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChangeFailure {
    /// The key path.
    pub path: String,
    /// Why (safe to show: no secrets).
    pub error: String,
}

/// What a config write changed and applied (also the `config.changed` event's fields). Each
/// changed key is in exactly one of `applied`, `restarted`, `restartRequired` and `failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChangesApplied {
    /// Every changed key.
    pub changes: Vec<ConfigChangeEntry>,
    /// Keys in force now, without restarting anything.
    pub applied: Vec<String>,
    /// Keys in force now because their subsystem restarted (a channel account, the ComfyUI
    /// worker pool).
    #[serde(default)]
    pub restarted: Vec<String>,
    /// Keys that take effect after a restart of clawgate.
    pub restart_required: Vec<String>,
    /// Keys that could not be applied; the previous values stay in force.
    #[serde(default)]
    pub failed: Vec<ConfigChangeFailure>,
}

/// `config.set`, `config.patch`, `config.apply` → `{ok, path, hash, changes, applied,
/// restartRequired}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigWriteResult {
    /// Always `true`.
    pub ok: bool,
    /// The file written.
    pub path: String,
    /// Its new hash.
    pub hash: String,
    /// What changed and was applied.
    #[serde(flatten)]
    pub changes: ConfigChangesApplied,
}

/// `config.set` result.
pub type ConfigSetResult = ConfigWriteResult;

/// `config.patch` result.
pub type ConfigPatchResult = ConfigWriteResult;

/// `config.apply` result.
pub type ConfigApplyResult = ConfigWriteResult;
