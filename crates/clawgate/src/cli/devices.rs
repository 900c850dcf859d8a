//! `clawgate devices …`: review and decide device pairing requests, revoke paired devices.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::Client;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs, call};
use super::output;

/// Manage device pairing: pending requests and paired devices.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate devices list
  clawgate devices approve 6f1c2a9e-…        # the requestId shown by `devices list`
  clawgate devices reject 6f1c2a9e-…
  clawgate devices revoke 3fa85f64b2c1       # a device id or a unique prefix of one")]
pub struct DevicesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DevicesCommand,
}

/// `clawgate devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List pending pairing requests and paired devices.
    #[command(after_help = "Examples:
  clawgate devices list
  clawgate devices list --json | jq '.pending[].requestId'")]
    List(ListArgs),
    /// Approve a pending pairing request: the device may connect and receives a device token.
    #[command(after_help = "Example:
  clawgate devices approve 6f1c2a9e-5b1d-4c55-9a43-0e2f7d1c9b10

A unique prefix of the request id is enough.")]
    Approve(DecideArgs),
    /// Reject a pending pairing request.
    #[command(after_help = "Example:
  clawgate devices reject 6f1c2a9e-5b1d-4c55-9a43-0e2f7d1c9b10")]
    Reject(DecideArgs),
    /// Unpair a device: its tokens stop working and its connections are closed.
    #[command(after_help = "Examples:
  clawgate devices revoke 3fa85f64b2c1                 # remove the device (device.pair.remove)
  clawgate devices revoke 3fa85f64b2c1 --role operator # only revoke its operator token (device.token.revoke)")]
    Revoke(RevokeArgs),
}

/// `devices list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the gateway's {pending, paired} as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `devices approve` / `devices reject`.
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

/// `devices revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The device id (or a unique prefix)
    pub device_id: String,
    /// Only revoke the device token of this role and keep the pairing
    #[arg(long)]
    pub role: Option<String>,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate devices …`.
pub async fn run(args: DevicesArgs) -> anyhow::Result<i32> {
    match args.command {
        DevicesCommand::List(a) => list(a).await,
        DevicesCommand::Approve(a) => decide(a, names::DEVICE_PAIR_APPROVE).await,
        DevicesCommand::Reject(a) => decide(a, names::DEVICE_PAIR_REJECT).await,
        DevicesCommand::Revoke(a) => revoke(a).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<i32> {
    let client = conn::connect_default(&args.conn).await?;
    let result = call(&client, names::DEVICE_PAIR_LIST, json!({}), args.json).await;
    client.close().await;
    let payload = match result? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
        return Ok(0);
    }
    print!("{}", render_list(&payload));
    Ok(0)
}

fn array<'a>(payload: &'a Value, key: &str) -> &'a [Value] {
    payload.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn client_label(v: &Value) -> String {
    let name = output::str_field(v, "displayName");
    let client = match (output::str_field(v, "clientId"), output::str_field(v, "clientMode")) {
        ("", _) => "-".to_owned(),
        (id, "") => id.to_owned(),
        (id, mode) => format!("{id}/{mode}"),
    };
    if name.is_empty() { client } else { format!("{name} ({client})") }
}

fn render_list(payload: &Value) -> String {
    let pending = array(payload, "pending");
    let paired = array(payload, "paired");
    let mut out = String::new();
    if pending.is_empty() {
        out.push_str("No pending pairing requests.\n");
    } else {
        out.push_str(&format!("Pending pairing requests ({}):\n", pending.len()));
        let rows: Vec<Vec<String>> = pending
            .iter()
            .map(|r| {
                vec![
                    output::str_field(r, "requestId").to_owned(),
                    output::short_id(output::str_field(r, "deviceId")).to_owned(),
                    client_label(r),
                    output::str_field(r, "role").to_owned(),
                    output::list_field(r, "scopes"),
                    output::age(r.get("ts").and_then(Value::as_i64)),
                ]
            })
            .collect();
        out.push_str(&output::table(&["REQUEST ID", "DEVICE", "CLIENT", "ROLE", "SCOPES", "AGE"], &rows));
        out.push_str("\nApprove with `clawgate devices approve <REQUEST ID>`, or reject with `clawgate devices reject <REQUEST ID>`.\n");
    }
    out.push('\n');
    if paired.is_empty() {
        out.push_str("No paired devices.\n");
    } else {
        out.push_str(&format!("Paired devices ({}):\n", paired.len()));
        let rows: Vec<Vec<String>> = paired
            .iter()
            .map(|d| {
                vec![
                    output::short_id(output::str_field(d, "deviceId")).to_owned(),
                    client_label(d),
                    output::list_field(d, "roles"),
                    output::list_field(d, "scopes"),
                    output::age(d.get("approvedAtMs").and_then(Value::as_i64)),
                    output::age(d.get("lastSeenAtMs").and_then(Value::as_i64)),
                ]
            })
            .collect();
        out.push_str(&output::table(&["DEVICE", "CLIENT", "ROLES", "SCOPES", "APPROVED", "LAST SEEN"], &rows));
        out.push('\n');
    }
    out
}

/// Resolve a full id from `wanted`: an exact match, else the one entry it is a prefix of.
fn resolve(entries: &[Value], key: &str, wanted: &str) -> Result<String, String> {
    let ids: Vec<&str> = entries.iter().map(|e| output::str_field(e, key)).filter(|id| !id.is_empty()).collect();
    if ids.contains(&wanted) {
        return Ok(wanted.to_owned());
    }
    let matches: Vec<&str> = ids.iter().copied().filter(|id| id.starts_with(wanted)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!("no {key} matches {wanted:?} (see `clawgate devices list`)")),
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
    let listing = match call(client, names::DEVICE_PAIR_LIST, json!({}), args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    // An id that is not pending is still sent as given: the gateway says why it cannot be decided.
    let request_id =
        resolve(array(&listing, "pending"), "requestId", &args.request_id).unwrap_or(args.request_id.clone());
    let answer = match call(client, method, json!({"requestId": request_id}), args.json).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&answer, true);
    } else {
        let device = output::str_field(&answer, "deviceId");
        match output::str_field(&answer, "decision") {
            "approved" => println!(
                "Approved device {} (request {request_id}). It can connect now and will receive a device token.",
                output::short_id(device)
            ),
            "rejected" => println!("Rejected pairing request {request_id} from device {}.", output::short_id(device)),
            other => println!("Request {request_id}: {other}"),
        }
    }
    Ok(0)
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<i32> {
    let client = conn::connect_default(&args.conn).await?;
    let result = revoke_on(&client, &args).await;
    client.close().await;
    result
}

async fn revoke_on(client: &Client, args: &RevokeArgs) -> anyhow::Result<i32> {
    let listing = match call(client, names::DEVICE_PAIR_LIST, json!({}), args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let device_id = match resolve(array(&listing, "paired"), "deviceId", &args.device_id) {
        Ok(id) => id,
        Err(message) => {
            eprintln!("clawgate: {message}");
            return Ok(1);
        }
    };
    let (method, params) = match &args.role {
        Some(role) => (names::DEVICE_TOKEN_REVOKE, json!({"deviceId": device_id, "role": role})),
        None => (names::DEVICE_PAIR_REMOVE, json!({"deviceId": device_id})),
    };
    let answer = match call(client, method, params, args.json).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&answer, true);
        return Ok(0);
    }
    let short = output::short_id(&device_id);
    match &args.role {
        Some(role) => println!("Revoked the {role} token of device {short}; its {role} connections were closed."),
        None if answer.get("removed").and_then(Value::as_bool) == Some(false) => {
            println!("Device {short} was not paired; nothing to remove.")
        }
        None => println!("Removed device {short}: its tokens no longer work and its connections were closed."),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_exact_ids_and_accepts_unique_prefixes() {
        let entries = vec![json!({"deviceId":"abc123"}), json!({"deviceId":"abd456"}), json!({"deviceId":"abc"})];
        assert_eq!(resolve(&entries, "deviceId", "abc").unwrap(), "abc");
        assert_eq!(resolve(&entries, "deviceId", "abd").unwrap(), "abd456");
        assert!(resolve(&entries, "deviceId", "ab").unwrap_err().contains("matches 3 entries"));
        assert!(resolve(&entries, "deviceId", "zz").unwrap_err().contains("no deviceId matches"));
    }

    #[test]
    fn list_shows_pending_requests_and_paired_devices() {
        let payload = json!({
            "pending": [{"requestId":"req-1","deviceId":"0123456789abcdef","clientId":"gateway-client","clientMode":"backend","role":"operator","scopes":["operator.read"],"ts":0}],
            "paired": [{"deviceId":"fedcba9876543210","displayName":"laptop","clientId":"cli","roles":["operator"],"scopes":["operator.read","operator.write"],"createdAtMs":0,"approvedAtMs":0}]
        });
        let text = render_list(&payload);
        let expected = "\
Pending pairing requests (1):
REQUEST ID  DEVICE        CLIENT                  ROLE      SCOPES         AGE
req-1       0123456789ab  gateway-client/backend  operator  operator.read  -
Approve with `clawgate devices approve <REQUEST ID>`, or reject with `clawgate devices reject <REQUEST ID>`.

Paired devices (1):
DEVICE        CLIENT        ROLES     SCOPES                        APPROVED  LAST SEEN
fedcba987654  laptop (cli)  operator  operator.read,operator.write  -         -
";
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_list_says_so() {
        let text = render_list(&json!({"pending": [], "paired": []}));
        assert_eq!(text, "No pending pairing requests.\n\nNo paired devices.\n");
    }
}
