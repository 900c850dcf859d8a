//! `config.get`, `config.schema`, `config.set`, `config.patch`, `config.apply`.

use serde_json::Value;

use clawgate_protocol::methods::config::{
    ConfigApplyParams, ConfigApplyResult, ConfigChangesApplied, ConfigGetParams, ConfigGetResult, ConfigPatchParams,
    ConfigPatchResult, ConfigSchemaParams, ConfigSchemaResult, ConfigSetParams, ConfigSetResult, ConfigWriteParams,
    ConfigWriteResult,
};

use crate::config_service::{ConfigService, Reconfigure};
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::health::GatewayInfo;

/// `config.get` → the config in force, secrets redacted, with the hash to pass as `baseHash`.
pub async fn config_get(
    config: &ConfigService,
    ctx: &CallContext,
    _: ConfigGetParams,
) -> Result<ConfigGetResult, CoreError> {
    let c = config.current();
    let redacted = clawgate_config::redacted(&c.value);
    Ok(ConfigGetResult {
        exists: c.exists,
        valid: true,
        hash: c.hash.clone(),
        config_revision_hash: c.hash.clone(),
        raw: serde_json::to_string_pretty(&redacted).unwrap_or_default(),
        config: redacted,
        issues: Vec::new(),
        path: ctx.client.has_scope(clawgate_protocol::scopes::ADMIN).then(|| c.path.display().to_string()),
    })
}

/// `config.schema` → `{schema, uiHints, version, generatedAt}`.
pub async fn config_schema(info: &GatewayInfo, _: ConfigSchemaParams) -> Result<ConfigSchemaResult, CoreError> {
    let Value::Object(ui_hints) = clawgate_config::ui_hints() else {
        return Err(CoreError::internal("the config UI hints are not an object"));
    };
    Ok(ConfigSchemaResult {
        schema: clawgate_config::config_schema(),
        ui_hints,
        version: info.version.clone(),
        generated_at: crate::time::rfc3339(info.started_at_ms),
    })
}

fn check_raw(method: &str, p: &ConfigWriteParams) -> Result<(), CoreError> {
    if p.raw.trim().is_empty() {
        return Err(CoreError::invalid(format!("invalid {method} params: raw must not be empty")));
    }
    Ok(())
}

async fn write_and_apply(
    config: &ConfigService,
    to: Reconfigure<'_>,
    text: String,
    base_hash: Option<&str>,
) -> Result<ConfigWriteResult, CoreError> {
    let (loaded, changes) = config.write(text, base_hash).await?;
    // The config service reports what it applied as the `config.changed` event's payload; read
    // it back as its type.
    let applied: ConfigChangesApplied =
        serde_json::from_value(config.apply_changes(to, &changes).await).map_err(CoreError::internal)?;
    Ok(ConfigWriteResult {
        ok: true,
        path: loaded.path.display().to_string(),
        hash: loaded.hash.clone(),
        changes: applied,
    })
}

/// `config.set {raw, baseHash?}` → replace the whole config (JSON5 text).
pub async fn config_set(
    config: &ConfigService,
    to: Reconfigure<'_>,
    p: ConfigSetParams,
) -> Result<ConfigSetResult, CoreError> {
    check_raw("config.set", &p)?;
    write_and_apply(config, to, p.raw, p.base_hash.as_deref()).await
}

/// `config.apply {raw, baseHash?}` → replace the whole config and apply it.
pub async fn config_apply(
    config: &ConfigService,
    to: Reconfigure<'_>,
    p: ConfigApplyParams,
) -> Result<ConfigApplyResult, CoreError> {
    check_raw("config.apply", &p)?;
    write_and_apply(config, to, p.raw, p.base_hash.as_deref()).await
}

/// `config.patch {raw (JSON merge patch), baseHash?, replacePaths?}` → merge into the config
/// in force and apply.
pub async fn config_patch(
    config: &ConfigService,
    to: Reconfigure<'_>,
    p: ConfigPatchParams,
) -> Result<ConfigPatchResult, CoreError> {
    check_raw("config.patch", &p)?;
    let patch: Value = json5::from_str(&p.raw)
        .map_err(|e| CoreError::invalid(format!("invalid config.patch params: raw is not JSON5: {e}")))?;
    if !patch.is_object() {
        return Err(CoreError::invalid("invalid config.patch params: raw must be a JSON object"));
    }
    let mut merged = config.current().value.clone();
    clawgate_config::merge_patch_replacing(&mut merged, &patch, p.replace_paths.as_deref().unwrap_or(&[]));
    let text = serde_json::to_string_pretty(&merged).map_err(CoreError::internal)?;
    write_and_apply(config, to, text, p.base_hash.as_deref()).await
}
