//! `clawgate tokens …`: scoped access tokens for backends (`tokens.create`, `tokens.list`,
//! `tokens.revoke` on the running gateway, so a revocation closes live connections at once).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs, call};
use super::output;

/// Scoped access tokens: credentials for a backend, limited to scopes, sessions, methods and a rate.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate tokens create --name compose --scopes operator.write --sessions 'compose:*' \\
      --methods agent,chat.* --rate 60/min
  clawgate tokens list
  clawgate tokens revoke compose            # by name, or by the id `tokens list` shows

The backend connects with the printed token as `auth.token` (it starts with cgt_).")]
pub struct TokensArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// `clawgate tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print its secret (shown this once; only a hash is stored).
    #[command(after_help = "Examples:
  # A document editor's backend: turns and chat on its own sessions only, 60 requests a minute.
  clawgate tokens create --name compose --scopes operator.write --sessions 'compose:*' \\
      --methods agent,chat.* --rate 60/min

  # A read-only dashboard of one agent's sessions.
  clawgate tokens create --name dash --scopes operator.read --sessions 'agent:ops:*' \\
      --methods 'sessions.*,chat.history'

Patterns: `*` matches everything, `prefix*` everything starting with prefix, anything else
only itself. A bare session pattern (`compose:*`) matches that key under any agent; write
`agent:main:compose:*` to pin the agent. Without --sessions or --methods the token is not
limited in that respect. A connect is granted the scopes it asks for that the token covers.")]
    Create(CreateArgs),
    /// List tokens (never their secrets).
    #[command(after_help = "Examples:
  clawgate tokens list
  clawgate tokens list --all --json | jq '.tokens[].name'")]
    List(ListArgs),
    /// Revoke a token: new connects fail and its live connections are closed now.
    #[command(after_help = "Examples:
  clawgate tokens revoke compose
  clawgate tokens revoke 3fa85f64b2c1d0e9")]
    Revoke(RevokeArgs),
}

/// `tokens create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for people, unique among live tokens
    #[arg(long)]
    pub name: String,
    /// Scopes the token may be granted, comma-separated (e.g. operator.write)
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Session-key patterns it may use, comma-separated (e.g. 'compose:*')
    #[arg(long, value_delimiter = ',')]
    pub sessions: Vec<String>,
    /// Method patterns it may call, comma-separated (e.g. agent,chat.*)
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Requests allowed across its connections, e.g. 60/min, 600/1h, 10/s
    #[arg(long)]
    pub rate: Option<String>,
    /// Print the gateway's answer as one compact JSON line (it holds the secret)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `tokens list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list revoked tokens
    #[arg(long)]
    pub all: bool,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `tokens revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id or name
    #[arg(value_name = "ID_OR_NAME")]
    pub id_or_name: String,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate tokens …`.
pub async fn run(args: TokensArgs) -> anyhow::Result<i32> {
    let (conn_args, method, params, as_json) = match &args.command {
        TokensCommand::Create(a) => {
            let mut params = json!({"name": a.name, "scopes": a.scopes, "sessions": a.sessions, "methods": a.methods});
            if let Some(rate) = &a.rate {
                params["rate"] = json!(rate);
            }
            (&a.conn, names::TOKENS_CREATE, params, a.json)
        }
        TokensCommand::List(a) => (&a.conn, names::TOKENS_LIST, json!({"includeRevoked": a.all}), a.json),
        TokensCommand::Revoke(a) => (&a.conn, names::TOKENS_REVOKE, json!({"token": a.id_or_name}), a.json),
    };
    let client = conn::connect_default(conn_args).await?;
    let result = call(&client, method, params, as_json).await;
    client.close().await;
    let answer = match result? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if as_json {
        output::print_json(&answer, true);
        return Ok(0);
    }
    match args.command {
        TokensCommand::Create(_) => print!("{}", render_created(&answer)),
        TokensCommand::List(_) => print!("{}", render_list(&answer)),
        TokensCommand::Revoke(_) => println!(
            "Revoked token {} ({}); {} live connection(s) closed.",
            output::str_field(&answer, "name"),
            output::str_field(&answer, "id"),
            answer.get("closed").and_then(Value::as_u64).unwrap_or(0)
        ),
    }
    Ok(0)
}

fn or_all(v: &Value, key: &str) -> String {
    match output::list_field(v, key).as_str() {
        "-" => "(all)".to_owned(),
        list => list.to_owned(),
    }
}

fn render_created(answer: &Value) -> String {
    format!(
        "Created token {name} (id {id}).\n\n  {token}\n\nThis is the only time the token is shown: store it now (only a hash is kept).\n\
         scopes: {scopes}  sessions: {sessions}  methods: {methods}  rate: {rate}\n",
        name = output::str_field(answer, "name"),
        id = output::str_field(answer, "id"),
        token = output::str_field(answer, "token"),
        scopes = output::list_field(answer, "scopes"),
        sessions = or_all(answer, "sessions"),
        methods = or_all(answer, "methods"),
        rate = answer.get("rate").and_then(Value::as_str).unwrap_or("-"),
    )
}

fn render_list(answer: &Value) -> String {
    let tokens = answer.get("tokens").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if tokens.is_empty() {
        return "No access tokens. Create one with `clawgate tokens create --name … --scopes …`.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                output::str_field(t, "id").to_owned(),
                output::str_field(t, "name").to_owned(),
                output::list_field(t, "scopes"),
                or_all(t, "sessions"),
                or_all(t, "methods"),
                t.get("rate").and_then(Value::as_str).unwrap_or("-").to_owned(),
                output::age(t.get("createdAt").and_then(Value::as_i64)),
                output::age(t.get("lastUsedAt").and_then(Value::as_i64)),
                if t.get("revokedAt").is_some() { "revoked".to_owned() } else { "live".to_owned() },
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "SCOPES", "SESSIONS", "METHODS", "RATE", "CREATED", "LAST USED", "STATE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_never_shows_a_secret_and_says_all_for_no_limit() {
        let answer = json!({"tokens": [{"id": "0123456789abcdef", "name": "compose", "scopes": ["operator.write"],
            "sessions": ["compose:*"], "methods": [], "rate": "60/1m", "createdAt": 1}]});
        let text = render_list(&answer);
        assert!(text.contains("compose:*") && text.contains("(all)") && text.contains("60/1m"), "{text}");
        assert!(!text.contains("cgt_"), "{text}");
    }
}
