//! `clawgate nodes …`: the nodes (`openclaw node run` hosts and apps) — list them, review and
//! decide their pairing requests, invoke a command on one.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::Client;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs, call};
use super::output;

/// Nodes: list, approve or reject their pairing requests, invoke commands on them.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate nodes list
  clawgate nodes pending
  clawgate nodes approve 6f1c2a9e-…        # the requestId shown by `nodes pending`
  clawgate nodes invoke --node 3fa85f64b2c1 --command system.which --params '{\"bins\":[\"sh\"]}'")]
pub struct NodesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NodesCommand,
}

/// `clawgate nodes` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List known nodes: connected or not, approved or waiting, what they can run.
    #[command(after_help = "Examples:
  clawgate nodes list
  clawgate nodes list --json | jq '.nodes[] | {nodeId, connected, commands}'")]
    List(JsonArgs),
    /// List node pairing requests waiting for an operator.
    #[command(after_help = "Example:
  clawgate nodes pending")]
    Pending(JsonArgs),
    /// Approve a node's pairing request: its commands may be invoked.
    #[command(after_help = "Example:
  clawgate nodes approve 6f1c2a9e-5b1d-4c55-9a43-0e2f7d1c9b10

A unique prefix of the request id is enough.")]
    Approve(DecideArgs),
    /// Reject a node's pairing request.
    #[command(after_help = "Example:
  clawgate nodes reject 6f1c2a9e-5b1d-4c55-9a43-0e2f7d1c9b10")]
    Reject(DecideArgs),
    /// Run a command on a node and print its answer.
    #[command(after_help = "Examples:
  clawgate nodes invoke --node 3fa85f64b2c1 --command system.which --params '{\"bins\":[\"sh\"]}'
  clawgate nodes invoke --node desk --command system.which --params '{\"bins\":[\"git\"]}' --invoke-timeout 5000

--node takes a node id, a unique prefix of one, or a display name.")]
    Invoke(InvokeArgs),
}

/// `nodes list` / `nodes pending`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `nodes approve` / `nodes reject`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The pairing request id (or a unique prefix)
    pub request_id: String,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `nodes invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The node: its id, a unique prefix of it, or its display name
    #[arg(long)]
    pub node: String,
    /// The command (one the node declared, e.g. system.which)
    #[arg(long)]
    pub command: String,
    /// The command's params, a JSON object
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// How long the gateway waits for the node's answer (ms)
    #[arg(long = "invoke-timeout", value_name = "MS", default_value_t = 15_000)]
    pub invoke_timeout_ms: u64,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate nodes …`.
pub async fn run(args: NodesArgs) -> anyhow::Result<i32> {
    match args.command {
        NodesCommand::List(a) => list(a).await,
        NodesCommand::Pending(a) => pending(a).await,
        NodesCommand::Approve(a) => decide(a, names::NODE_PAIR_APPROVE).await,
        NodesCommand::Reject(a) => decide(a, names::NODE_PAIR_REJECT).await,
        NodesCommand::Invoke(a) => invoke(a).await,
    }
}

fn array<'a>(payload: &'a Value, key: &str) -> &'a [Value] {
    payload.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

async fn one_call(conn_args: &ConnArgs, method: &str, as_json: bool) -> anyhow::Result<Result<Value, i32>> {
    let client = conn::connect_default(conn_args).await?;
    let result = call(&client, method, json!({}), as_json).await;
    client.close().await;
    result
}

async fn list(args: JsonArgs) -> anyhow::Result<i32> {
    let payload = match one_call(&args.conn, names::NODE_LIST, args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_nodes(&payload));
    }
    Ok(0)
}

async fn pending(args: JsonArgs) -> anyhow::Result<i32> {
    let payload = match one_call(&args.conn, names::NODE_PAIR_LIST, args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_pending(&payload));
    }
    Ok(0)
}

fn render_nodes(payload: &Value) -> String {
    let nodes = array(payload, "nodes");
    if nodes.is_empty() {
        return "No nodes known. Start one with `openclaw node run --host <gateway host> --port <port>`.\n".into();
    }
    let connected = nodes.iter().filter(|n| n["connected"] == true).count();
    let mut out = format!("Known: {} · Connected: {connected}\n", nodes.len());
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                output::short_id(output::str_field(n, "nodeId")).to_owned(),
                match output::str_field(n, "displayName") {
                    "" => "-".to_owned(),
                    name => name.to_owned(),
                },
                output::str_field(n, "platform").to_owned(),
                if n["connected"] == true { "connected" } else { "away" }.to_owned(),
                output::str_field(n, "approvalState").to_owned(),
                n["commands"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    out.push_str(&output::table(&["NODE", "NAME", "PLATFORM", "STATE", "APPROVAL", "COMMANDS"], &rows));
    out
}

fn render_pending(payload: &Value) -> String {
    let pending = array(payload, "pending");
    if pending.is_empty() {
        return "No pending node pairing requests.\n".into();
    }
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|r| {
            vec![
                output::str_field(r, "requestId").to_owned(),
                output::short_id(output::str_field(r, "nodeId")).to_owned(),
                output::str_field(r, "displayName").to_owned(),
                output::str_field(r, "remoteIp").to_owned(),
                r["commands"].as_array().map_or(0, Vec::len).to_string(),
                output::age(r.get("ts").and_then(Value::as_i64)),
            ]
        })
        .collect();
    let mut out = format!("Pending node pairing requests ({}):\n", pending.len());
    out.push_str(&output::table(&["REQUEST ID", "NODE", "NAME", "IP", "COMMANDS", "AGE"], &rows));
    out.push_str(
        "\nApprove with `clawgate nodes approve <REQUEST ID>`, or reject with `clawgate nodes reject <REQUEST ID>`.\n",
    );
    out
}

/// The one entry whose `key` is `wanted`, or starts with it, or (for nodes) is named `wanted`.
fn resolve(entries: &[Value], key: &str, wanted: &str) -> Result<String, String> {
    let ids: Vec<&str> = entries.iter().map(|e| output::str_field(e, key)).filter(|id| !id.is_empty()).collect();
    if ids.contains(&wanted) {
        return Ok(wanted.to_owned());
    }
    let mut matches: Vec<&str> = ids.iter().copied().filter(|id| id.starts_with(wanted)).collect();
    if matches.is_empty() {
        matches = entries
            .iter()
            .filter(|e| output::str_field(e, "displayName") == wanted)
            .map(|e| output::str_field(e, key))
            .collect();
    }
    match matches.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!("no {key} matches {wanted:?} (see `clawgate nodes list`)")),
        many => Err(format!("{wanted:?} matches {} entries; give more of the {key}", many.len())),
    }
}

async fn decide(args: DecideArgs, method: &str) -> anyhow::Result<i32> {
    let client = conn::connect_default(&args.conn).await?;
    let result = decide_on(&client, &args, method).await;
    client.close().await;
    result
}

async fn decide_on(client: &Client, args: &DecideArgs, method: &str) -> anyhow::Result<i32> {
    let listing = match call(client, names::NODE_PAIR_LIST, json!({}), args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    // An id that is not pending is still sent as given: the gateway says why.
    let request_id =
        resolve(array(&listing, "pending"), "requestId", &args.request_id).unwrap_or(args.request_id.clone());
    let answer = match call(client, method, json!({"requestId": request_id}), args.json).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&answer, true);
    } else if method == names::NODE_PAIR_APPROVE {
        let node = output::str_field(&answer["node"], "nodeId");
        println!("Approved node {} (request {request_id}). Its commands may be invoked now.", output::short_id(node));
    } else {
        let node = output::str_field(&answer, "nodeId");
        println!("Rejected node pairing request {request_id} from node {}.", output::short_id(node));
    }
    Ok(0)
}

async fn invoke(args: InvokeArgs) -> anyhow::Result<i32> {
    let params: Value =
        serde_json::from_str(&args.params).map_err(|e| anyhow::anyhow!("--params must be a JSON object: {e}"))?;
    anyhow::ensure!(params.is_object(), "--params must be a JSON object, e.g. '{{\"bins\":[\"sh\"]}}'");
    let client = conn::connect_default(&args.conn).await?;
    let result = invoke_on(&client, &args, params).await;
    client.close().await;
    result
}

async fn invoke_on(client: &Client, args: &InvokeArgs, params: Value) -> anyhow::Result<i32> {
    let listing = match call(client, names::NODE_LIST, json!({}), args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    // A node that is not listed is still sent as given: the gateway says it is unknown.
    let node_id = resolve(array(&listing, "nodes"), "nodeId", &args.node).unwrap_or(args.node.clone());
    let request = json!({
        "nodeId": node_id,
        "command": args.command,
        "params": params,
        "timeoutMs": args.invoke_timeout_ms,
        "idempotencyKey": format!("clawgate-nodes-invoke-{:016x}", rand::random::<u64>()),
    });
    let wait = std::time::Duration::from_millis(args.invoke_timeout_ms.saturating_add(10_000));
    let answer = match client.request_with_timeout(names::NODE_INVOKE, request, wait).await {
        Ok(a) => a,
        Err(clawgate_client::ClientError::Rpc(error)) => {
            output::print_error(&error, args.json);
            return Ok(1);
        }
        Err(e) => return Err(anyhow::anyhow!("node.invoke failed: {e}")),
    };
    output::print_json(&answer, args.json);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        nodes: NodesArgs,
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::{CommandFactory, Parser};
        Wrapper::command().debug_assert();
        let w = Wrapper::try_parse_from([
            "nodes",
            "invoke",
            "--node",
            "desk",
            "--command",
            "system.which",
            "--invoke-timeout",
            "5",
        ])
        .expect("parses");
        assert!(matches!(w.nodes.command, NodesCommand::Invoke(InvokeArgs { invoke_timeout_ms: 5, .. })));
    }

    #[test]
    fn nodes_resolve_by_id_prefix_or_name() {
        let nodes = vec![json!({"nodeId": "abc123", "displayName": "desk"}), json!({"nodeId": "abd456"})];
        assert_eq!(resolve(&nodes, "nodeId", "abc123").unwrap(), "abc123");
        assert_eq!(resolve(&nodes, "nodeId", "abd").unwrap(), "abd456");
        assert_eq!(resolve(&nodes, "nodeId", "desk").unwrap(), "abc123");
        assert!(resolve(&nodes, "nodeId", "ab").unwrap_err().contains("matches 2 entries"));
        assert!(resolve(&nodes, "nodeId", "zz").unwrap_err().contains("no nodeId matches"));
    }

    #[test]
    fn list_and_pending_render_as_tables() {
        let list = json!({"nodes": [{"nodeId": "0123456789abcdef", "displayName": "desk", "platform": "linux",
            "connected": true, "approvalState": "approved", "commands": ["system.which", "system.run"]}]});
        let text = render_nodes(&list);
        assert!(text.starts_with("Known: 1 · Connected: 1\n"), "{text}");
        assert!(text.contains("0123456789ab  desk  linux     connected  approved  2"), "{text}");
        let pending = json!({"pending": [{"requestId": "req-1", "nodeId": "0123456789abcdef", "displayName": "desk",
            "remoteIp": "127.0.0.1", "commands": ["system.which"], "ts": 0}]});
        let text = render_pending(&pending);
        assert!(text.contains("req-1"), "{text}");
        assert!(text.contains("clawgate nodes approve <REQUEST ID>"), "{text}");
        assert_eq!(render_pending(&json!({"pending": []})), "No pending node pairing requests.\n");
    }
}
