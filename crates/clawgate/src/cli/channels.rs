//! `clawgate channels status` and `clawgate pairing …` (chat senders asking for access).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::Client;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs, call};
use super::output;

/// Chat channels: Telegram, Discord, web chat.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate channels status
  clawgate channels status --json | jq '.channelAccounts.telegram[0].lastInboundAt'")]
pub struct ChannelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ChannelsCommand,
}

/// `clawgate channels` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Per account: configured, connected, last message in and out, last error, outbox.
    Status(StatusArgs),
}

/// `channels status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this channel (telegram, discord, webchat, line, whatsapp)
    #[arg(long)]
    pub channel: Option<String>,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Approve or reject chat senders who asked for access with a pairing code.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate pairing list
  clawgate pairing approve telegram K7M2Q9XA   # the code the bot sent to the sender
  clawgate pairing approve K7M2Q9XA            # the channel may be left out
  clawgate pairing reject K7M2Q9XA")]
pub struct PairingArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PairingCommand,
}

/// `clawgate pairing` subcommands.
#[derive(Debug, Subcommand)]
pub enum PairingCommand {
    /// Pending pairing requests.
    List(PairingListArgs),
    /// Let the sender who got this code talk to the assistant.
    Approve(DecideArgs),
    /// Refuse the sender who got this code (channels.pairing.dismiss).
    Reject(DecideArgs),
}

/// `pairing list`.
#[derive(Debug, Args)]
pub struct PairingListArgs {
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `pairing approve|reject [CHANNEL] CODE`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// `CODE`, or `CHANNEL CODE` (e.g. `telegram K7M2Q9XA`)
    #[arg(required = true, num_args = 1..=2, value_names = ["CHANNEL", "CODE"])]
    pub words: Vec<String>,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate channels …`.
pub async fn run_channels(args: ChannelsArgs) -> anyhow::Result<i32> {
    let ChannelsCommand::Status(a) = args.command;
    let client = conn::connect_default(&a.conn).await?;
    let params = match &a.channel {
        Some(c) => json!({"channel": c}),
        None => json!({}),
    };
    let result = call(&client, names::CHANNELS_STATUS, params, a.json).await;
    client.close().await;
    let payload = match result? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if a.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_status(&payload));
    }
    Ok(0)
}

fn render_status(payload: &Value) -> String {
    let mut rows = Vec::new();
    let order = payload["channelOrder"].as_array().cloned().unwrap_or_default();
    for ch in order.iter().filter_map(Value::as_str) {
        for acct in payload["channelAccounts"][ch].as_array().cloned().unwrap_or_default() {
            let state = if acct["connected"] == true {
                "connected".to_owned()
            } else if acct["enabled"] == false {
                "disabled".to_owned()
            } else {
                output::str_field(&acct, "healthState").to_owned()
            };
            let outbox = &acct["outbox"];
            rows.push(vec![
                ch.to_owned(),
                output::str_field(&acct, "accountId").to_owned(),
                if state.is_empty() { "stopped".to_owned() } else { state },
                output::age(acct["lastInboundAt"].as_i64()),
                output::age(acct["lastOutboundAt"].as_i64()),
                format!(
                    "{} queued, {} failed",
                    outbox["queued"].as_u64().unwrap_or(0),
                    outbox["failed"].as_u64().unwrap_or(0)
                ),
                output::str_field(&acct, "lastError").to_owned(),
            ]);
        }
    }
    if rows.is_empty() {
        return "No chat channels configured. Add one under channels.* in the config (see the README: \"Connect a Telegram bot\").\n".to_owned();
    }
    output::table(&["CHANNEL", "ACCOUNT", "STATE", "LAST IN", "LAST OUT", "OUTBOX", "LAST ERROR"], &rows)
}

/// Run `clawgate pairing …`.
pub async fn run_pairing(args: PairingArgs) -> anyhow::Result<i32> {
    match args.command {
        PairingCommand::List(a) => {
            let client = conn::connect(&a.conn, &["operator.pairing"]).await?;
            let params = json!({});
            let result = call(&client, names::CHANNELS_PAIRING_LIST, params, a.json).await;
            client.close().await;
            let payload = match result? {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            if a.json {
                output::print_json(&payload, true);
                return Ok(0);
            }
            let list = payload["requests"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("No pending pairing requests.");
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        output::str_field(r, "requestId").to_owned(),
                        output::str_field(r, "channel").to_owned(),
                        output::str_field(r, "accountId").to_owned(),
                        output::str_field(r, "senderId").to_owned(),
                        output::str_field(r, "senderLabel").to_owned(),
                        output::str_field(r, "expiresAt").to_owned(),
                    ]
                })
                .collect();
            print!("{}", output::table(&["CODE", "CHANNEL", "ACCOUNT", "SENDER", "NAME", "EXPIRES"], &rows));
            Ok(0)
        }
        PairingCommand::Approve(a) => decide(a, names::CHANNELS_PAIRING_APPROVE).await,
        PairingCommand::Reject(a) => decide(a, names::CHANNELS_PAIRING_DISMISS).await,
    }
}

async fn decide(a: DecideArgs, method: &str) -> anyhow::Result<i32> {
    let (channel, code) = match a.words.as_slice() {
        [code] => (None, code.clone()),
        [channel, code] => (Some(channel.clone()), code.clone()),
        _ => anyhow::bail!("give CODE or CHANNEL CODE"),
    };
    let client = conn::connect(&a.conn, &["operator.pairing"]).await?;
    let result = decide_on(&client, channel.as_deref(), &code, method, a.json).await;
    client.close().await;
    result
}

async fn decide_on(
    client: &Client,
    channel: Option<&str>,
    code: &str,
    method: &str,
    as_json: bool,
) -> anyhow::Result<i32> {
    // The request names its channel and account; find them from the code.
    let list = match call(client, names::CHANNELS_PAIRING_LIST, json!({}), as_json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let requests = list["requests"].as_array().cloned().unwrap_or_default();
    let found = requests.iter().find(|r| {
        output::str_field(r, "requestId").eq_ignore_ascii_case(code)
            && channel.is_none_or(|c| output::str_field(r, "channel") == c)
    });
    let Some(request) = found else {
        eprintln!(
            "no pending pairing request with code {code}{}; `clawgate pairing list` shows the pending ones \
             (codes expire after an hour — the sender gets a new one by writing again)",
            channel.map(|c| format!(" on {c}")).unwrap_or_default()
        );
        return Ok(1);
    };
    let mut params = json!({
        "channel": output::str_field(request, "channel"),
        "accountId": output::str_field(request, "accountId"),
        "requestId": output::str_field(request, "requestId"),
    });
    if method == names::CHANNELS_PAIRING_APPROVE {
        params["notify"] = json!(true);
    }
    let payload = match call(client, method, params, as_json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if as_json {
        output::print_json(&payload, true);
    } else {
        let verb = if method == names::CHANNELS_PAIRING_APPROVE { "Approved" } else { "Rejected" };
        println!(
            "{verb} {} ({}) on {}.",
            output::str_field(request, "senderLabel"),
            output::str_field(&payload, "senderId"),
            output::str_field(request, "channel")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_state_and_errors() {
        let payload = json!({"channelOrder": ["telegram"], "channelAccounts": {"telegram": [
            {"accountId": "default", "connected": false, "enabled": true, "healthState": "stopped",
             "lastError": "bad token", "outbox": {"queued": 2, "failed": 1}}]}});
        let out = render_status(&payload);
        assert!(out.contains("telegram") && out.contains("stopped") && out.contains("bad token"), "{out}");
        assert!(out.contains("2 queued, 1 failed"), "{out}");
        assert!(render_status(&json!({"channelOrder": []})).contains("No chat channels configured"));
    }
}
