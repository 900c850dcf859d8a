//! `clawgate status`: is the gateway up, and what is it doing.

use clap::Args;
use serde_json::{Value, json};

use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs};
use super::output;

/// Show a short summary of the running gateway.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate status
  clawgate status --json
  clawgate status --url ws://127.0.0.1:28789 --token s3cret

Exit status: 0 when the gateway is reachable and healthy, 1 otherwise.")]
pub struct StatusArgs {
    /// Print {health, status, pairing} as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<i32> {
    let client = conn::connect_default(&args.conn).await?;
    let (health, status, pairing) = tokio::join!(
        client.request(names::HEALTH, json!({})),
        client.request(names::STATUS, json!({})),
        client.request(names::DEVICE_PAIR_LIST, json!({})),
    );
    let hello = client.hello().clone();
    client.close().await;
    let health = health.map_err(|e| anyhow::anyhow!("health failed: {e}"))?;
    let status = status.map_err(|e| anyhow::anyhow!("status failed: {e}"))?;
    let healthy = health.get("ok").and_then(Value::as_bool) != Some(false);

    if args.json {
        let pairing = match &pairing {
            Ok(p) => json!({
                "pending": p.get("pending").and_then(Value::as_array).map_or(0, Vec::len),
                "paired": p.get("paired").and_then(Value::as_array).map_or(0, Vec::len),
            }),
            Err(e) => json!({"error": e.to_string()}),
        };
        output::print_json(&json!({"health": health, "status": status, "pairing": pairing}), true);
        return Ok(if healthy { 0 } else { 1 });
    }

    let version = status.get("version").and_then(Value::as_str).unwrap_or(&hello.server.version);
    let uptime = status.get("uptimeMs").and_then(Value::as_u64).unwrap_or(hello.snapshot.uptime_ms);
    println!("clawgate {version} at {} — up {}", args.conn.url, output::duration(uptime));
    let auth_mode =
        status.get("authMode").and_then(Value::as_str).or(hello.snapshot.auth_mode.as_deref()).unwrap_or("?");
    println!("auth: {auth_mode}");
    if let Some(c) = status.get("connections") {
        let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (ops, nodes) = (n("operators"), n("nodes"));
        println!(
            "connections: {} ({ops} operator{}, {nodes} node{})",
            n("total"),
            plural(ops as usize),
            plural(nodes as usize)
        );
    }
    match &pairing {
        Ok(p) => {
            let pending = p.get("pending").and_then(Value::as_array).map_or(0, Vec::len);
            let paired = p.get("paired").and_then(Value::as_array).map_or(0, Vec::len);
            let hint = if pending > 0 { " — review with `clawgate devices list`" } else { "" };
            println!(
                "pairing: {pending} pending request{}, {paired} paired device{}{hint}",
                plural(pending),
                plural(paired)
            );
        }
        Err(e) => println!("pairing: unknown ({e})"),
    }
    if let Some(line) = comfy_workers_line(&status) {
        println!("{line}");
    }
    for line in cluster_lines(&status) {
        println!("{line}");
    }
    println!("health: {}", if healthy { "ok" } else { "NOT OK" });
    Ok(if healthy { 0 } else { 1 })
}

/// `comfy workers: 3 (1 configured, 2 joined), 2 up` — `None` without ComfyUI workers.
fn comfy_workers_line(status: &Value) -> Option<String> {
    let workers = status.pointer("/workerPools/comfy").and_then(Value::as_array).filter(|w| !w.is_empty())?;
    let joined = workers.iter().filter(|w| w.get("kind").and_then(Value::as_str) == Some("joined")).count();
    let up = workers.iter().filter(|w| w.get("healthy").and_then(Value::as_bool) == Some(true)).count();
    Some(format!(
        "comfy workers: {} ({} configured, {joined} joined), {up} up — details with `clawgate workers`",
        workers.len(),
        workers.len() - joined
    ))
}

/// Several gateways on one database: each gateway (alive or not) and who holds which lease.
/// Nothing for a gateway alone on SQLite.
fn cluster_lines(status: &Value) -> Vec<String> {
    let Some(cluster) = status.get("cluster").filter(|c| c.get("mode").and_then(Value::as_str) == Some("shared"))
    else {
        return Vec::new();
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let gateways = cluster.get("gateways").and_then(Value::as_array).cloned().unwrap_or_default();
    let alive = gateways.iter().filter(|g| g.get("alive").and_then(Value::as_bool) == Some(true)).count();
    let mut lines = vec![format!("cluster: {} gateway{} ({alive} alive)", gateways.len(), plural(gateways.len()))];
    if let Some(error) = cluster.get("error").and_then(Value::as_str) {
        lines.push(format!("  registry unreadable: {error}"));
    }
    for g in &gateways {
        let state = if g.get("alive").and_then(Value::as_bool) == Some(true) { "alive" } else { "GONE" };
        let ago = g.get("seenAgoMs").and_then(Value::as_u64).unwrap_or(0);
        let me = if g.get("self").and_then(Value::as_bool) == Some(true) { " — this one" } else { "" };
        lines.push(format!("  {} {} {state} (seen {} ago){me}", text(g, "id"), text(g, "addr"), output::duration(ago)));
    }
    for l in cluster.get("leases").and_then(Value::as_array).into_iter().flatten() {
        let expires = l
            .get("expiresInMs")
            .and_then(Value::as_u64)
            .map(|ms| format!(" (expires in {} unless renewed)", output::duration(ms)));
        lines.push(format!("  lease {} held by {}{}", text(l, "name"), text(l, "holder"), expires.unwrap_or_default()));
    }
    lines
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_lines_list_gateways_and_lease_holders_only_when_shared() {
        assert!(cluster_lines(&json!({})).is_empty());
        assert!(cluster_lines(&json!({"cluster": {"mode": "single", "gateways": [{"id": "a"}]}})).is_empty());
        let status = json!({"cluster": {"mode": "shared", "gateways": [
            {"id": "a", "addr": "10.0.0.1:1", "alive": true, "seenAgoMs": 300, "self": true},
            {"id": "b", "addr": "10.0.0.2:1", "alive": false, "seenAgoMs": 65000, "self": false}],
            "leases": [{"name": "channel:telegram:default", "holder": "a", "expiresInMs": 8000}]}});
        let lines = cluster_lines(&status);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], "cluster: 2 gateways (1 alive)");
        assert!(lines[1].starts_with("  a 10.0.0.1:1 alive (seen ") && lines[1].ends_with(" — this one"), "{lines:?}");
        assert!(lines[2].starts_with("  b 10.0.0.2:1 GONE (seen "), "{lines:?}");
        assert!(lines[3].starts_with("  lease channel:telegram:default held by a (expires in "), "{lines:?}");
    }

    #[test]
    fn the_comfy_line_counts_configured_and_joined_workers() {
        assert_eq!(comfy_workers_line(&json!({"workerPools": {"comfy": []}})), None);
        let status = json!({"workerPools": {"comfy": [
            {"name": "w0", "kind": "configured", "healthy": false},
            {"name": "gpu1", "kind": "joined", "healthy": true}]}});
        assert_eq!(
            comfy_workers_line(&status).as_deref(),
            Some("comfy workers: 2 (1 configured, 1 joined), 1 up — details with `clawgate workers`")
        );
    }
}
