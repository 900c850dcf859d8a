//! Built-in tools the model may call: real, read-only views of clawgate's own state, and
//! ComfyUI image generation through [`ToolHost`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

use clawgate_llm::ToolSpec;
use clawgate_store::{SessionQuery, SessionStore, TranscriptStore};

use super::AgentService;

/// Names of the built-in tools.
pub const SESSIONS_LIST: &str = "sessions_list";
/// See [`SESSIONS_LIST`].
pub const SESSIONS_HISTORY: &str = "sessions_history";
/// See [`SESSIONS_LIST`].
pub const CURRENT_TIME: &str = "current_time";
/// Queue a ComfyUI job from a template (offered only when ComfyUI is configured).
pub const COMFY_GENERATE: &str = "comfy_generate";
/// Run a command on a paired node (offered while one is connected); behind exec approvals.
pub const NODE_INVOKE: &str = "node_invoke";

/// What the built-in tools reach outside the agent: ComfyUI. The agent defines this narrow
/// trait and the composition root implements it with the comfy service, so the agent never
/// holds the gateway or the comfy service (dependencies point one way: comfy and channels may
/// call the agent, the agent calls only this).
#[async_trait::async_trait]
pub trait ToolHost: Send + Sync + 'static {
    /// The ComfyUI templates the model may use; `None` while ComfyUI is not configured (the
    /// tool is then not offered).
    fn comfy_templates(&self) -> Option<Vec<TemplateInfo>>;

    /// Queue a ComfyUI job from a template. The error is text for the model.
    async fn comfy_generate(&self, job: ComfyGenerate) -> Result<ComfyQueued, String>;

    /// The connected, approved nodes the model may invoke; empty (the tool is not offered)
    /// where the host has none.
    fn nodes(&self) -> Vec<NodeInfo> {
        Vec::new()
    }

    /// Run a command on a node, asking an operator first when the exec approvals policy says
    /// so. The error is text for the model (denied, unknown node, the node's failure).
    async fn node_invoke(&self, call: NodeCall) -> Result<Value, String> {
        Err(format!("no node can run {}: nodes are not available here", call.command))
    }
}

/// A node offered to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its id.
    pub node_id: String,
    /// Its display name, if any.
    pub display_name: Option<String>,
    /// The commands it declared.
    pub commands: Vec<String>,
}

/// A `node_invoke` call, as the tool host receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCall {
    /// The node's id or display name.
    pub node: String,
    /// The node command (`system.run`, `system.which`, …).
    pub command: String,
    /// Its params.
    pub params: Option<Value>,
    /// How long the node may take (after any approval).
    pub timeout_ms: Option<u64>,
    /// The agent whose model asked (its exec policy applies).
    pub agent_id: String,
    /// The run's session.
    pub session_key: Option<String>,
    /// The run.
    pub run_id: Option<String>,
    /// The model's tool call id.
    pub tool_call_id: Option<String>,
}

/// Who is calling a tool: the run, when a model is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToolCaller<'a> {
    /// The run's origin (`{id, mode, account?, chatId?, threadId?}`), deciding where outputs go.
    pub origin: Option<&'a Value>,
    /// The run's agent.
    pub agent_id: Option<&'a str>,
    /// The run's session.
    pub session_key: Option<&'a str>,
    /// The run.
    pub run_id: Option<&'a str>,
    /// The model's tool call id.
    pub tool_call_id: Option<&'a str>,
}

/// A template offered to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Its id.
    pub id: String,
    /// The inputs a caller may set.
    pub inputs: Vec<String>,
}

/// A `comfy_generate` call, as the tool host receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComfyGenerate {
    /// The template id.
    pub template: String,
    /// Its inputs, as text.
    pub inputs: BTreeMap<String, String>,
    /// Free text for the template's prompt input.
    pub prompt: Option<String>,
    /// Where the image goes when ready (`{channel, account, chatId, threadId}` of a channel run).
    pub deliver_to: Option<Value>,
    /// The run's origin, kept with the job.
    pub requested_by: Option<Value>,
}

/// A queued ComfyUI job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComfyQueued {
    /// The job id.
    pub job_id: String,
    /// Its status (`queued`, …).
    pub status: String,
    /// `(position, total)` in the queue, when known.
    pub position: Option<(u64, u64)>,
}

/// The tool host of a gateway without ComfyUI: `comfy_generate` is not offered, and a direct
/// call says ComfyUI is not configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoComfy;

#[async_trait::async_trait]
impl ToolHost for NoComfy {
    fn comfy_templates(&self) -> Option<Vec<TemplateInfo>> {
        None
    }

    async fn comfy_generate(&self, _: ComfyGenerate) -> Result<ComfyQueued, String> {
        Err("ComfyUI is not configured; add comfy.workers to the config".into())
    }
}

/// Specs offered to the model.
pub fn specs(host: &dyn ToolHost) -> Vec<ToolSpec> {
    let mut specs = base_specs();
    if let Some(templates) = host.comfy_templates() {
        let templates: Vec<String> = templates.iter().map(|t| format!("{} ({})", t.id, t.inputs.join(", "))).collect();
        specs.push(ToolSpec {
            name: COMFY_GENERATE.into(),
            description: format!(
                "Generate an image with ComfyUI from a workflow template; the image is sent to the current chat \
                 when it is ready. Templates (inputs): {}.",
                templates.join("; ")
            ),
            parameters: json!({"type": "object", "required": ["template"], "properties": {
                "template": {"type": "string"},
                "inputs": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                "prompt": {"type": "string", "description": "free text for the template's prompt input"}}}),
        });
    }
    let nodes = host.nodes();
    if !nodes.is_empty() {
        let listed: Vec<String> = nodes
            .iter()
            .map(|n| match &n.display_name {
                Some(name) => format!("{} \"{name}\" ({})", n.node_id, n.commands.join(", ")),
                None => format!("{} ({})", n.node_id, n.commands.join(", ")),
            })
            .collect();
        specs.push(ToolSpec {
            name: NODE_INVOKE.into(),
            description: format!(
                "Run a command on a paired node (a machine running the OpenClaw node host). Commands an \
                 operator has not allowed ask for their approval first, and may be denied. \
                 Nodes (commands): {}. system.run takes {{\"command\": [argv…]}}; system.which takes \
                 {{\"bins\": [names…]}}.",
                listed.join("; ")
            ),
            parameters: json!({"type": "object", "required": ["node", "command"], "properties": {
                "node": {"type": "string", "description": "node id or display name"},
                "command": {"type": "string"},
                "params": {"type": "object"},
                "timeoutMs": {"type": "integer", "minimum": 1}}}),
        });
    }
    specs
}

fn base_specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: SESSIONS_LIST.into(),
            description: "List chat sessions on this gateway, most recently active first.".into(),
            parameters: json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 100}}}),
        },
        ToolSpec {
            name: SESSIONS_HISTORY.into(),
            description: "Read the last messages of a chat session by its key.".into(),
            parameters: json!({"type": "object", "required": ["sessionKey"], "properties": {
                "sessionKey": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}}),
        },
        ToolSpec {
            name: CURRENT_TIME.into(),
            description: "The current date and time (UTC, RFC 3339) and Unix time in milliseconds.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    ]
}

/// Whether a tool exists (for `/tools/invoke`).
pub fn exists(name: &str) -> bool {
    matches!(name, SESSIONS_LIST | SESSIONS_HISTORY | CURRENT_TIME | COMFY_GENERATE | NODE_INVOKE)
}

/// Run a tool for a run whose origin (`{id, mode, account?, chatId?, threadId?}` of the client
/// or channel that started it) decides where its outputs go. Errors are returned as text for
/// the model (and `isError`), never panics.
pub(crate) async fn invoke_for(
    agents: &AgentService,
    name: &str,
    args: &Value,
    caller: ToolCaller<'_>,
) -> Result<Value, String> {
    let store = &agents.inner.store;
    let origin = caller.origin;
    match name {
        NODE_INVOKE => {
            let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
            let call = NodeCall {
                node: text("node").ok_or("node is required")?.to_owned(),
                command: text("command").ok_or("command is required")?.to_owned(),
                params: args.get("params").filter(|p| !p.is_null()).cloned(),
                timeout_ms: args.get("timeoutMs").and_then(Value::as_u64),
                agent_id: caller.agent_id.unwrap_or("main").to_owned(),
                session_key: caller.session_key.map(str::to_owned),
                run_id: caller.run_id.map(str::to_owned),
                tool_call_id: caller.tool_call_id.map(str::to_owned),
            };
            agents.inner.tools.node_invoke(call).await
        }
        COMFY_GENERATE => {
            let template = args.get("template").and_then(Value::as_str).ok_or("template is required")?;
            let mut inputs = BTreeMap::new();
            for (k, v) in args.get("inputs").and_then(Value::as_object).into_iter().flatten() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                inputs.insert(k.clone(), text);
            }
            let deliver_to = origin.filter(|o| o.get("mode").and_then(Value::as_str) == Some("channel")).map(|o| {
                json!({"channel": o.get("id"), "account": o.get("account"), "chatId": o.get("chatId"),
                       "threadId": o.get("threadId")})
            });
            let job = ComfyGenerate {
                template: template.to_owned(),
                inputs,
                prompt: args.get("prompt").and_then(Value::as_str).map(str::to_owned),
                deliver_to,
                requested_by: origin.cloned(),
            };
            let queued = agents.inner.tools.comfy_generate(job).await?;
            Ok(json!({"jobId": queued.job_id, "status": queued.status,
                      "position": queued.position.map(|(p, t)| json!({"position": p, "total": t})),
                      "note": "the image is delivered to the chat when it is ready"}))
        }
        CURRENT_TIME => {
            let now = crate::time::now_ms();
            Ok(json!({"utc": crate::time::rfc3339(now), "unixMs": now}))
        }
        SESSIONS_LIST => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20).clamp(1, 100) as usize;
            let rows = store
                .list_sessions(&SessionQuery { limit, ..SessionQuery::default() })
                .await
                .map_err(|e| format!("cannot list sessions: {e}"))?;
            Ok(json!({"sessions": rows.iter().map(|s| json!({
                "key": s.key, "agentId": s.agent_id, "label": s.label,
                "updatedAt": s.updated_at_ms, "messageCount": s.message_count,
            })).collect::<Vec<_>>()}))
        }
        SESSIONS_HISTORY => {
            let key = args.get("sessionKey").and_then(Value::as_str).ok_or("sessionKey is required")?;
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20).clamp(1, 50) as usize;
            let Some(session) = store.get_session(key).await.map_err(|e| e.to_string())? else {
                return Err(format!("no session with key {key}"));
            };
            let rows = store.tail(&session.session_id, limit, None).await.map_err(|e| e.to_string())?;
            Ok(json!({"sessionKey": key, "messages": rows.iter().map(|e| json!({
                "role": e.role.as_str(), "text": super::transcript::text_of(&e.content), "seq": e.seq,
            })).collect::<Vec<_>>()}))
        }
        other => Err(format!("unknown tool: {other}")),
    }
}
