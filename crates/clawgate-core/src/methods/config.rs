//! `config.get`, `config.schema`, `config.set`, `config.patch`, `config.apply`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config_service::apply_changes;
use crate::dispatch::CallContext;
use crate::error::{CoreError, parse_params};
use crate::gateway::Gateway;

/// `config.get` → the config in force, secrets redacted, with the hash to pass as `baseHash`.
pub async fn config_get(gw: &Arc<Gateway>, ctx: &CallContext) -> Result<Value, CoreError> {
    let c = gw.config.current();
    let redacted = clawgate_config::redacted(&c.value);
    let mut out = json!({
        "exists": c.exists,
        "valid": true,
        "hash": c.hash,
        "configRevisionHash": c.hash,
        "config": redacted,
        "raw": serde_json::to_string_pretty(&redacted).unwrap_or_default(),
        "issues": [],
    });
    if ctx.client.has_scope(clawgate_protocol::scopes::ADMIN) {
        out["path"] = json!(c.path.display().to_string());
    }
    Ok(out)
}

/// `config.schema` → `{schema, uiHints, version, generatedAt}`.
pub async fn config_schema(gw: &Arc<Gateway>) -> Result<Value, CoreError> {
    Ok(json!({
        "schema": clawgate_config::config_schema(),
        "uiHints": clawgate_config::ui_hints(),
        "version": gw.version,
        "generatedAt": crate::time::rfc3339(gw.started_at_ms),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteParams {
    raw: String,
    #[serde(default)]
    base_hash: Option<String>,
    #[serde(default)]
    replace_paths: Option<Vec<String>>,
    // Accepted for compatibility with upstream clients; clawgate applies changes itself.
    #[serde(default)]
    #[allow(dead_code)]
    session_key: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    delivery_context: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    restart_delay_ms: Option<u64>,
}

fn parse_write(method: &str, params: Value) -> Result<WriteParams, CoreError> {
    let p: WriteParams = parse_params(method, params)?;
    if p.raw.trim().is_empty() {
        return Err(CoreError::invalid(format!("invalid {method} params: raw must not be empty")));
    }
    Ok(p)
}

async fn write_and_apply(gw: &Arc<Gateway>, text: String, base_hash: Option<&str>) -> Result<Value, CoreError> {
    let (loaded, changes) = gw.config.write(text, base_hash).await?;
    let applied = apply_changes(gw, &gw.overrides(), &changes);
    Ok(json!({
        "ok": true,
        "path": loaded.path.display().to_string(),
        "hash": loaded.hash,
        "changes": applied["changes"],
        "applied": applied["applied"],
        "restartRequired": applied["restartRequired"],
    }))
}

/// `config.set {raw, baseHash?}` → replace the whole config (JSON5 text).
pub async fn config_set(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p = parse_write("config.set", params)?;
    write_and_apply(gw, p.raw, p.base_hash.as_deref()).await
}

/// `config.apply {raw, baseHash?}` → replace the whole config and apply it.
pub async fn config_apply(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p = parse_write("config.apply", params)?;
    write_and_apply(gw, p.raw, p.base_hash.as_deref()).await
}

/// `config.patch {raw (JSON merge patch), baseHash?, replacePaths?}` → merge into the config
/// in force and apply.
pub async fn config_patch(gw: &Arc<Gateway>, params: Value) -> Result<Value, CoreError> {
    let p = parse_write("config.patch", params)?;
    let patch: Value = json5::from_str(&p.raw)
        .map_err(|e| CoreError::invalid(format!("invalid config.patch params: raw is not JSON5: {e}")))?;
    if !patch.is_object() {
        return Err(CoreError::invalid("invalid config.patch params: raw must be a JSON object"));
    }
    let mut merged = gw.config.current().value.clone();
    clawgate_config::merge_patch_replacing(&mut merged, &patch, p.replace_paths.as_deref().unwrap_or(&[]));
    let text = serde_json::to_string_pretty(&merged).map_err(CoreError::internal)?;
    write_and_apply(gw, text, p.base_hash.as_deref()).await
}
