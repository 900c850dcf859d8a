//! `POST /tools/invoke`: run one of the gateway's built-in tools directly, without an agent turn.
//! Always on, bearer-protected. Tools that change things or reach outside are never invocable
//! over HTTP (the upstream default deny list); clawgate's own tools are read-only views.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use clawgate_core::agent::tools;

use super::error::ToolsError;
use super::openai::BODY_TIMEOUT;
use super::{Api, gate, read_json};

/// Upstream's limit for this endpoint.
const TOOLS_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Tools refused over HTTP whatever the config says (contract §8: the default HTTP deny list).
/// None of them exists in clawgate today; the list keeps a future one from appearing here.
pub(crate) const HTTP_DENIED: [&str; 10] = [
    "exec",
    "spawn",
    "shell",
    "fs_write",
    "fs_delete",
    "fs_move",
    "apply_patch",
    "sessions_spawn",
    "sessions_send",
    "cron",
];

/// `POST /tools/invoke` — `{tool|name, action?, args?, sessionKey?}`.
pub(crate) async fn invoke(State(api): State<Api>, req: Request) -> Response {
    let (parts, body) = match gate(&api, req, true, Method::POST).await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    run_tool(&api, &parts.headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// The tool name and arguments of a request.
fn parse(body: &Value) -> Result<(String, Value), ToolsError> {
    let name = ["tool", "name"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()))
        .ok_or_else(|| ToolsError::invalid("tools.invoke requires body.tool"))?;
    let args = match body.get("args") {
        Some(Value::Object(a)) => Value::Object(a.clone()),
        _ => json!({}),
    };
    Ok((name.to_owned(), args))
}

async fn run_tool(api: &Api, headers: &HeaderMap, body: Body) -> Result<Response, ToolsError> {
    let (body, _permit) = read_json(&api.bodies, headers, body, TOOLS_BODY_LIMIT, BODY_TIMEOUT).await?;
    let (name, args) = parse(&body)?;
    if HTTP_DENIED.contains(&name.as_str()) || !tools::exists(&name) {
        return Err(ToolsError::not_available(&name));
    }
    let result = api.agents.invoke_tool(&name, &args).await.map_err(ToolsError::tool_failed)?;
    // The real gateway returns the tool result as agents see it: a text part holding the
    // pretty-printed JSON, plus the JSON itself as `details`.
    let text = serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string());
    let body = json!({"ok": true, "result": {"content": [{"type": "text", "text": text}], "details": result}});
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_comes_from_tool_or_name_and_args_default_to_an_object() {
        assert_eq!(parse(&json!({"tool": "current_time"})).unwrap(), ("current_time".into(), json!({})));
        assert_eq!(parse(&json!({"name": "x", "args": {"a": 1}})).unwrap(), ("x".into(), json!({"a": 1})));
        assert_eq!(parse(&json!({"tool": "x", "args": [1]})).unwrap().1, json!({}));
        assert!(parse(&json!({"args": {}})).is_err());
        assert!(parse(&json!({"tool": " "})).is_err());
    }

    #[test]
    fn denied_tools_are_never_built_in_ones() {
        for name in HTTP_DENIED {
            assert!(!tools::exists(name), "{name} is on the HTTP deny list but exists");
        }
    }
}
