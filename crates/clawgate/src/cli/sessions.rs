//! `clawgate sessions …`: list chat sessions, read a session's transcript, reset a session.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::{Client, ClientError};
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs};
use super::output;

/// Chat sessions on the gateway: list them, read one, start one afresh.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate sessions list
  clawgate sessions show main                  # the default agent's main session
  clawgate sessions show agent:main:work --limit 20
  clawgate sessions reset work")]
pub struct SessionsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SessionsCommand,
}

/// `clawgate sessions` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, most recently active first.
    #[command(after_help = "Examples:
  clawgate sessions list
  clawgate sessions list --agent main --limit 10
  clawgate sessions list --json | jq -r '.sessions[].key'")]
    List(ListArgs),
    /// Print a session's transcript (chat.history), oldest message first.
    #[command(after_help = "Examples:
  clawgate sessions show main
  clawgate sessions show agent:main:work --limit 5
  clawgate sessions show work --json | jq '.messages | length'")]
    Show(ShowArgs),
    /// Start a session afresh: later messages no longer see the old conversation (it stays on disk).
    #[command(after_help = "Example:
  clawgate sessions reset agent:main:work")]
    Reset(ResetArgs),
}

/// `sessions list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many sessions
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Only this agent's sessions
    #[arg(long)]
    pub agent: Option<String>,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `sessions show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Session key: `agent:<agentId>:<name>`, or a name of the default agent's sessions
    pub key: String,
    /// Show the last N messages
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `sessions reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Session key: `agent:<agentId>:<name>`, or a name of the default agent's sessions
    pub key: String,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate sessions …`.
pub async fn run(args: SessionsArgs) -> anyhow::Result<i32> {
    match args.command {
        SessionsCommand::List(a) => list(a).await,
        SessionsCommand::Show(a) => show(a).await,
        SessionsCommand::Reset(a) => reset(a).await,
    }
}

/// One request on a fresh connection; an error answer is printed (exit 1), a transport failure
/// is an `Err`.
async fn call_once(
    conn_args: &ConnArgs,
    method: &str,
    params: Value,
    as_json: bool,
) -> anyhow::Result<Result<Value, i32>> {
    let client: Client = conn::connect_default(conn_args).await?;
    let result = client.request(method, params).await;
    client.close().await;
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(ClientError::Rpc(error)) => {
            output::print_error(&error, as_json);
            Ok(Err(1))
        }
        Err(e) => Err(anyhow::anyhow!("{method} failed: {e}")),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<i32> {
    let mut params = json!({"limit": args.limit});
    if let Some(agent) = &args.agent {
        params["agentId"] = json!(agent);
    }
    let payload = match call_once(&args.conn, names::SESSIONS_LIST, params, args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_list(&payload));
    }
    Ok(0)
}

async fn show(args: ShowArgs) -> anyhow::Result<i32> {
    let params = json!({"sessionKey": args.key, "limit": args.limit});
    let payload = match call_once(&args.conn, names::CHAT_HISTORY, params, args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
    } else {
        print!("{}", render_transcript(&payload, &args.key));
    }
    Ok(0)
}

async fn reset(args: ResetArgs) -> anyhow::Result<i32> {
    let payload = match call_once(&args.conn, names::SESSIONS_RESET, json!({"key": args.key}), args.json).await? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.json {
        output::print_json(&payload, true);
        return Ok(0);
    }
    let key = payload.get("key").and_then(Value::as_str).unwrap_or(&args.key);
    let id = payload.get("sessionId").and_then(Value::as_str).map(|id| format!(" (new session id {id})"));
    println!(
        "Session {key} starts afresh{}. The old transcript is kept, but no longer shown or sent to the model.",
        id.unwrap_or_default()
    );
    Ok(0)
}

fn render_list(payload: &Value) -> String {
    let sessions = payload.get("sessions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if sessions.is_empty() {
        return "No sessions yet. Start one with `clawgate chat`.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                output::str_field(s, "key").to_owned(),
                s.get("messageCount").and_then(Value::as_u64).map_or_else(|| "-".to_owned(), |n| n.to_string()),
                output::age(s.get("updatedAt").and_then(Value::as_i64)),
                match output::str_field(s, "label") {
                    "" => "-".to_owned(),
                    label => label.to_owned(),
                },
            ]
        })
        .collect();
    let mut out = output::table(&["KEY", "MESSAGES", "UPDATED", "LABEL"], &rows);
    out.push('\n');
    let total = payload.get("totalCount").and_then(Value::as_u64).unwrap_or(sessions.len() as u64);
    if payload.get("hasMore").and_then(Value::as_bool) == Some(true) {
        out.push_str(&format!("{} of {total} sessions shown; raise --limit for more.\n", sessions.len()));
    }
    out
}

/// A transcript as a reader wants it: who, when, and what, one message after another.
fn render_transcript(payload: &Value, asked: &str) -> String {
    let key = payload.get("sessionKey").and_then(Value::as_str).unwrap_or(asked);
    let messages = payload.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if messages.is_empty() {
        return format!("Session {key} has no messages.\n");
    }
    let total = payload.get("totalMessages").and_then(Value::as_u64).unwrap_or(messages.len() as u64);
    let mut out = format!("Session {key}: {total} message{}\n", if total == 1 { "" } else { "s" });
    let earlier = total.saturating_sub(messages.len() as u64);
    if earlier > 0 {
        out.push_str(&format!("({earlier} earlier not shown; raise --limit to see them)\n"));
    }
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
        let when = m.get("timestamp").and_then(Value::as_i64).map(|ts| format!(" · {}", utc(ts))).unwrap_or_default();
        let status =
            m.pointer("/__openclaw/status").and_then(Value::as_str).map(|s| format!(" [{s}]")).unwrap_or_default();
        out.push_str(&format!("\n{role}{when}{status}\n"));
        let text = display_text(m);
        if text.trim().is_empty() {
            out.push_str("  (empty)\n");
        }
        for line in text.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A message's content for reading: text as is, other parts (images, tool calls) named.
fn display_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text").and_then(Value::as_str).unwrap_or("").to_owned(),
                Some(other) => {
                    let name = p.get("name").and_then(Value::as_str).map(|n| format!(" {n}")).unwrap_or_default();
                    format!("[{other}{name}]")
                }
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `2026-11-22 01:39:35 UTC` from Unix milliseconds (no time-zone database needed for UTC).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_gregorian() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_311_575_725), "2026-11-22 01:39:35 UTC");
    }

    #[test]
    fn transcript_shows_roles_times_status_and_indented_text() {
        let payload = json!({
            "sessionKey": "agent:main:x",
            "totalMessages": 3,
            "messages": [
                {"role": "user", "content": "two\nlines", "timestamp": 0},
                {"role": "assistant", "content": [{"type": "text", "text": "Hel"}], "__openclaw": {"status": "aborted"}},
            ],
        });
        let text = render_transcript(&payload, "x");
        assert_eq!(
            text,
            "Session agent:main:x: 3 messages\n(1 earlier not shown; raise --limit to see them)\n\
             \nuser · 1970-01-01 00:00:00 UTC\n  two\n  lines\n\nassistant [aborted]\n  Hel\n"
        );
    }

    #[test]
    fn empty_session_and_empty_list_say_so() {
        assert_eq!(render_transcript(&json!({"messages": []}), "k"), "Session k has no messages.\n");
        assert!(render_list(&json!({"sessions": []})).starts_with("No sessions yet."));
    }

    #[test]
    fn list_is_a_table_of_key_count_age_label() {
        let payload = json!({"sessions": [{"key": "agent:main:main", "messageCount": 2, "updatedAt": null}],
                             "hasMore": true, "totalCount": 7});
        let text = render_list(&payload);
        assert!(
            text.starts_with("KEY              MESSAGES  UPDATED  LABEL\nagent:main:main  2         -        -\n"),
            "{text}"
        );
        assert!(text.ends_with("1 of 7 sessions shown; raise --limit for more.\n"), "{text}");
    }

    #[test]
    fn non_text_parts_are_named() {
        let m = json!({"content": [{"type": "text", "text": "see "}, {"type": "toolCall", "name": "current_time"}]});
        assert_eq!(display_text(&m), "see [toolCall current_time]");
    }
}
