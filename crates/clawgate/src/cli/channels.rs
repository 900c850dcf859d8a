//! `clawgate channels status|start|stop|logout` and `clawgate pairing …` (chat senders asking
//! for access).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::Client;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs, call};
use super::output;

/// Chat channels: Telegram, Discord, Slack, LINE, WhatsApp, web chat.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate channels status
  clawgate channels status --json | jq '.channelAccounts.telegram[0].lastInboundAt'
  clawgate channels stop --channel telegram --account default   # pause one bot, the others keep running
  clawgate channels start --channel telegram                    # every telegram account
  clawgate channels logout --channel discord                    # stop and forget the session, across restarts

The gateway is found with --url (env CLAWGATE_URL) and --token (env CLAWGATE_GATEWAY_TOKEN, else the
token `clawgate gateway` stored in the state dir). start, stop and logout need operator.admin.")]
pub struct ChannelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ChannelsCommand,
}

/// `clawgate channels` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Per account: state, last message in and out, outbox, the webhook URL it expects, last error.
    Status(StatusArgs),
    /// Start a stopped or logged-out account (already running: nothing changes).
    Start(ControlArgs),
    /// Stop an account until `channels start` or the gateway's next start; config reloads keep it stopped.
    Stop(ControlArgs),
    /// Stop an account and forget its session (Telegram offset, Discord resume state); it stays
    /// stopped across restarts until `channels start`. Tokens stay in the config.
    Logout(ControlArgs),
}

/// `channels start|stop|logout --channel X [--account Y]`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The channel (telegram, discord, slack, line, whatsapp)
    #[arg(long)]
    pub channel: String,
    /// One account of it [default: every account of the channel]
    #[arg(long)]
    pub account: Option<String>,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
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
    match args.command {
        ChannelsCommand::Status(a) => status(a).await,
        ChannelsCommand::Start(a) => control(a, names::CHANNELS_START).await,
        ChannelsCommand::Stop(a) => control(a, names::CHANNELS_STOP).await,
        ChannelsCommand::Logout(a) => control(a, names::CHANNELS_LOGOUT).await,
    }
}

async fn control(a: ControlArgs, method: &str) -> anyhow::Result<i32> {
    let client = conn::connect(&a.conn, &[clawgate_protocol::scopes::ADMIN]).await?;
    let mut params = json!({"channel": a.channel});
    if let Some(account) = &a.account {
        params["accountId"] = json!(account);
    }
    let result = call(&client, method, params, a.json).await;
    client.close().await;
    let payload = match result? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if a.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_control(&payload, method));
    }
    Ok(0)
}

/// One line per affected account: `Stopped telegram/default.`
fn render_control(payload: &Value, method: &str) -> String {
    let channel = output::str_field(payload, "channel");
    let mut out = String::new();
    for acct in payload["accounts"].as_array().cloned().unwrap_or_default() {
        let id = output::str_field(&acct, "accountId");
        let line = match (method, acct["running"] == true) {
            (names::CHANNELS_START, true) => format!("Started {channel}/{id} (running)."),
            (names::CHANNELS_START, false) => format!("{channel}/{id} did not start; see `clawgate channels status`."),
            (names::CHANNELS_LOGOUT, _) => format!(
                "Logged out {channel}/{id}: stopped until `clawgate channels start --channel {channel} --account {id}`, \
                 also across restarts."
            ),
            _ => format!(
                "Stopped {channel}/{id} until `clawgate channels start --channel {channel} --account {id}` \
                 or the gateway's next start."
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

async fn status(a: StatusArgs) -> anyhow::Result<i32> {
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
            } else if acct["loggedOut"] == true {
                "logged out".to_owned()
            } else {
                output::str_field(&acct, "healthState").to_owned()
            };
            // The URL to paste into the platform's console; the path alone when the public
            // address is not configured.
            let webhook = match (acct["webhookUrl"].as_str(), acct["webhookPath"].as_str()) {
                (Some(url), _) => url.to_owned(),
                (None, Some(path)) => format!("<gateway.publicUrl>{path}"),
                (None, None) => "—".to_owned(),
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
                webhook,
                output::str_field(&acct, "lastError").to_owned(),
            ]);
        }
    }
    if rows.is_empty() {
        return "No chat channels configured. Add one under channels.* in the config (see the README: \"Connect a Telegram bot\").\n".to_owned();
    }
    output::table(&["CHANNEL", "ACCOUNT", "STATE", "LAST IN", "LAST OUT", "OUTBOX", "WEBHOOK URL", "LAST ERROR"], &rows)
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

    #[test]
    fn status_table_shows_the_webhook_url_or_a_dash() {
        let payload = json!({"channelOrder": ["line", "telegram", "slack"], "channelAccounts": {
            "line": [{"accountId": "default", "connected": true, "webhookPath": "/line/webhook",
                      "webhookUrl": "https://gw.example/line/webhook"}],
            "telegram": [{"accountId": "default", "connected": false, "healthState": "stopped"}],
            "slack": [{"accountId": "default", "connected": false, "loggedOut": true, "webhookPath": "/slack/events"}]}});
        let out = render_status(&payload);
        let line = out.lines().find(|l| l.starts_with("line")).unwrap();
        assert!(line.contains("https://gw.example/line/webhook"), "{out}");
        let telegram = out.lines().find(|l| l.starts_with("telegram")).unwrap();
        assert!(telegram.contains("—") && telegram.contains("stopped"), "{out}");
        let slack = out.lines().find(|l| l.starts_with("slack")).unwrap();
        assert!(slack.contains("<gateway.publicUrl>/slack/events") && slack.contains("logged out"), "{out}");
    }

    #[test]
    fn control_lines_name_each_account_and_how_to_undo() {
        let payload = json!({"channel": "telegram", "running": false, "stopped": true, "accounts": [
            {"accountId": "default", "running": false}, {"accountId": "second", "running": false}]});
        let out = render_control(&payload, names::CHANNELS_STOP);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.contains("Stopped telegram/second until `clawgate channels start --channel telegram --account second`")
        );
        let started = json!({"channel": "telegram", "accounts": [{"accountId": "default", "running": true}]});
        assert_eq!(render_control(&started, names::CHANNELS_START), "Started telegram/default (running).\n");
        assert!(render_control(&payload, names::CHANNELS_LOGOUT).contains("also across restarts"));
    }
}
