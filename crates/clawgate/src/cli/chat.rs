//! `clawgate chat`: talk to an agent from the terminal, through the gateway's WebSocket like any
//! other operator client.
//!
//! Each line read becomes one `chat.send` with a fresh idempotency key; the reply is printed as
//! its `chat` delta events arrive and the turn ends on the run's `final`, `aborted` or `error`
//! event. Ctrl-C while a reply streams sends `chat.abort` for that run and keeps the chat open;
//! Ctrl-C at the prompt quits.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use clawgate_client::{Client, ClientError, EventFrame};
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs};
use super::output;

/// Exit status after Ctrl-C, as shells report SIGINT.
const EXIT_INTERRUPTED: i32 = 130;

/// How long to wait for the `aborted` event after `chat.abort` answered, before giving up on it.
const ABORT_GRACE: Duration = Duration::from_secs(10);

/// Chat with an agent in the terminal.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate chat                                  # the default agent's main session; /exit quits
  clawgate chat --session work                   # another session (same as agent:main:work)
  clawgate chat --session work --agent coder     # a session of another agent
  clawgate chat --message 'Say hello'            # one message: print the reply and exit
  printf 'first\\nsecond\\n' | clawgate chat -s scratch

In the chat: /exit (or /quit, or end of input) leaves, /reset starts the session afresh, /help lists
these. Ctrl-C while a reply streams stops it (chat.abort); Ctrl-C at the prompt quits.

Exit status: 0 when done; 1 when the gateway cannot be reached or a --message reply fails; 130 after Ctrl-C.")]
pub struct ChatArgs {
    /// Session key: a name such as `work` (a session of the agent) or a full `agent:<agentId>:<name>`
    #[arg(long, short = 's', default_value = "main")]
    pub session: String,
    /// Agent for a plain session name [default: the gateway's default agent]
    #[arg(long)]
    pub agent: Option<String>,
    /// Send this one message, print the reply and exit
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// How one turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The reply is complete.
    Final,
    /// The run was stopped (by our Ctrl-C when `by_us`, or by another client).
    Aborted { by_us: bool },
    /// The gateway or the model failed; the message was printed.
    Failed,
}

/// Run `clawgate chat`.
pub async fn run(args: ChatArgs) -> anyhow::Result<i32> {
    let mut interrupts = interrupts();
    let client = conn::connect_default(&args.conn).await?;
    let code = match args.message.clone() {
        Some(message) => one_message(&client, &args, &message, &mut interrupts).await,
        None => interactive(&client, &args, &mut interrupts).await,
    };
    client.close().await;
    code
}

async fn one_message(
    client: &Client,
    args: &ChatArgs,
    message: &str,
    interrupts: &mut mpsc::Receiver<()>,
) -> anyhow::Result<i32> {
    Ok(match turn(client, args, message, interrupts).await? {
        Outcome::Final => 0,
        Outcome::Aborted { by_us: true } => EXIT_INTERRUPTED,
        Outcome::Aborted { by_us: false } | Outcome::Failed => 1,
    })
}

async fn interactive(client: &Client, args: &ChatArgs, interrupts: &mut mpsc::Receiver<()>) -> anyhow::Result<i32> {
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "Chatting in session {} on {}. /exit quits, Ctrl-C stops a reply, /help for more.",
            args.session, args.conn.url
        );
    }
    let mut lines = stdin_lines();
    loop {
        if tty {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = interrupts.recv() => {
                if tty {
                    eprintln!();
                }
                return Ok(EXIT_INTERRUPTED);
            }
        };
        let Some(line) = line else { return Ok(0) };
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => return Ok(0),
            "/help" => {
                eprintln!(
                    "/exit, /quit  leave the chat\n/reset        start this session afresh (the old transcript is kept)\n/help         this list\nCtrl-C        stop the reply that is streaming; at the prompt, quit"
                );
                continue;
            }
            "/reset" => {
                reset(client, args).await?;
                continue;
            }
            _ => {}
        }
        // Failed and aborted turns were reported; the chat goes on either way.
        turn(client, args, text, interrupts).await?;
    }
}

async fn reset(client: &Client, args: &ChatArgs) -> anyhow::Result<()> {
    let mut params = json!({"key": args.session});
    if let Some(agent) = &args.agent {
        params["agentId"] = json!(agent);
    }
    match client.request(names::SESSIONS_RESET, params).await {
        Ok(p) => eprintln!("Session {} starts afresh.", p.get("key").and_then(Value::as_str).unwrap_or(&args.session)),
        Err(ClientError::Rpc(e)) => eprintln!("error: cannot reset the session: {} ({})", e.message, e.code),
        Err(e) => return Err(anyhow::anyhow!("sessions.reset failed: {e}")),
    }
    Ok(())
}

/// Ctrl-C presses, as a channel. On Unix the SIGINT handler is installed right here, before
/// connecting, so an early Ctrl-C cannot kill the process mid-reply; a task keeps listening so no
/// press is lost between two waits.
fn interrupts() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        loop {
            #[cfg(unix)]
            let pressed = match sigint.as_mut() {
                Some(sigint) => sigint.recv().await.is_some(),
                None => tokio::signal::ctrl_c().await.is_ok(),
            };
            #[cfg(not(unix))]
            let pressed = tokio::signal::ctrl_c().await.is_ok();
            if !pressed || tx.send(()).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines of stdin, read on a plain thread: a blocking read parked in the runtime's blocking pool
/// would keep the process from exiting after `/exit` or Ctrl-C.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A fresh idempotency key per message: the gateway uses it as the run id.
fn new_key() -> String {
    format!("clawgate-chat-{:x}-{:016x}", output::now_ms(), rand::random::<u64>())
}

/// Send one message and print its reply as it streams.
async fn turn(
    client: &Client,
    args: &ChatArgs,
    message: &str,
    interrupts: &mut mpsc::Receiver<()>,
) -> anyhow::Result<Outcome> {
    // Subscribe before sending so not even the first event of the run can be missed.
    let mut events = client.subscribe_events();
    let key = new_key();
    let mut params = json!({"sessionKey": args.session, "message": message, "idempotencyKey": key});
    if let Some(agent) = &args.agent {
        params["agentId"] = json!(agent);
    }
    let ack = match client.request(names::CHAT_SEND, params).await {
        Ok(ack) => ack,
        Err(ClientError::Rpc(e)) => {
            eprintln!("error: {} ({})", e.message, e.code);
            return Ok(Outcome::Failed);
        }
        Err(e) => return Err(anyhow::anyhow!("chat.send failed: {e}")),
    };
    let run_id = ack.get("runId").and_then(Value::as_str).unwrap_or(&key).to_owned();

    let stdout = std::io::stdout();
    let mut reply = Reply::default();
    let mut aborting: Option<tokio::time::Instant> = None;
    loop {
        let since = aborting;
        let abort_deadline = async move {
            match since {
                Some(at) => tokio::time::sleep_until(at + ABORT_GRACE).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = events.recv() => event,
            _ = interrupts.recv() => {
                if aborting.is_some() {
                    // A second Ctrl-C: stop waiting for the gateway to confirm.
                    reply.end_line(&stdout);
                    return Ok(Outcome::Aborted { by_us: true });
                }
                aborting = Some(tokio::time::Instant::now());
                abort(client, args, &run_id).await?;
                continue;
            }
            () = abort_deadline => {
                reply.end_line(&stdout);
                eprintln!("[stopped; the gateway did not confirm within {}s]", ABORT_GRACE.as_secs());
                return Ok(Outcome::Aborted { by_us: true });
            }
        };
        let frame = match event {
            Ok(frame) => frame,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "fell behind the gateway's events; part of the reply may be missing");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => {
                reply.end_line(&stdout);
                let how = client.close_info().map(|c| c.to_string()).unwrap_or_else(|| "connection closed".into());
                anyhow::bail!("the gateway closed the connection during the reply ({how})");
            }
        };
        let Some(chat) = run_chat_event(&frame, &run_id) else { continue };
        match chat.get("state").and_then(Value::as_str).unwrap_or("") {
            "delta" => {
                reply.show(&stdout, message_text(chat).as_deref(), chat.get("deltaText").and_then(Value::as_str))
            }
            "final" => {
                reply.show(&stdout, message_text(chat).as_deref(), None);
                reply.end_line(&stdout);
                return Ok(Outcome::Final);
            }
            "aborted" => {
                reply.end_line(&stdout);
                eprintln!("[stopped]");
                return Ok(Outcome::Aborted { by_us: aborting.is_some() });
            }
            "error" => {
                reply.end_line(&stdout);
                let why = chat.get("errorMessage").and_then(Value::as_str).unwrap_or("the agent run failed");
                eprintln!("error: {why}");
                return Ok(Outcome::Failed);
            }
            // `status` phases and anything newer: nothing to print.
            _ => {}
        }
    }
}

async fn abort(client: &Client, args: &ChatArgs, run_id: &str) -> anyhow::Result<()> {
    let mut params = json!({"sessionKey": args.session, "runId": run_id});
    if let Some(agent) = &args.agent {
        params["agentId"] = json!(agent);
    }
    match client.request(names::CHAT_ABORT, params).await {
        Ok(_) => Ok(()),
        Err(ClientError::Rpc(e)) => {
            eprintln!("error: cannot stop the reply: {} ({})", e.message, e.code);
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("chat.abort failed: {e}")),
    }
}

/// The payload of a `chat` event of this run.
fn run_chat_event<'a>(frame: &'a EventFrame, run_id: &str) -> Option<&'a Value> {
    let payload = frame.payload.as_ref()?;
    (frame.event == "chat" && payload.get("runId").and_then(Value::as_str) == Some(run_id)).then_some(payload)
}

/// The text of `payload.message` (a string, or text parts), when the event carries one.
fn message_text(payload: &Value) -> Option<String> {
    match payload.get("message")?.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// What of the reply has been printed, so each event prints only what is new.
#[derive(Debug, Default)]
struct Reply {
    printed: String,
}

impl Reply {
    /// What to print for an event carrying the cumulative text (preferred: merged or replayed
    /// deltas cannot double it) and/or a delta.
    fn next_chunk(&mut self, cumulative: Option<&str>, delta: Option<&str>) -> String {
        match (cumulative, delta) {
            (Some(full), _) if full.starts_with(self.printed.as_str()) => {
                let chunk = full[self.printed.len()..].to_owned();
                self.printed = full.to_owned();
                chunk
            }
            // The gateway rewrote the reply (`replace`): start it again on a fresh line.
            (Some(full), _) => {
                self.printed = full.to_owned();
                format!("\n{full}")
            }
            (None, Some(delta)) => {
                self.printed.push_str(delta);
                delta.to_owned()
            }
            (None, None) => String::new(),
        }
    }

    fn show(&mut self, stdout: &std::io::Stdout, cumulative: Option<&str>, delta: Option<&str>) {
        let chunk = self.next_chunk(cumulative, delta);
        if chunk.is_empty() {
            return;
        }
        let mut out = stdout.lock();
        let _ = out.write_all(chunk.as_bytes());
        let _ = out.flush();
    }

    /// Ends the reply's line (if anything was printed), so what follows starts on its own line.
    fn end_line(&mut self, stdout: &std::io::Stdout) {
        if !self.printed.is_empty() && !self.printed.ends_with('\n') {
            let mut out = stdout.lock();
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
        self.printed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_text_prints_only_what_is_new() {
        let mut r = Reply::default();
        assert_eq!(r.next_chunk(Some("Hello"), Some("Hello")), "Hello");
        // A merged delta and a repeated event print nothing twice.
        assert_eq!(r.next_chunk(Some("Hello from the"), Some(" from the")), " from the");
        assert_eq!(r.next_chunk(Some("Hello from the"), None), "");
        assert_eq!(r.next_chunk(None, Some(" fake")), " fake");
        assert_eq!(r.next_chunk(Some("Hello from the fake model"), None), " model");
    }

    #[test]
    fn a_rewritten_reply_starts_on_a_new_line() {
        let mut r = Reply::default();
        r.next_chunk(Some("Draft"), None);
        assert_eq!(r.next_chunk(Some("Better"), None), "\nBetter");
    }

    #[test]
    fn message_text_reads_strings_and_text_parts() {
        let parts = json!({"message": {"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}});
        assert_eq!(message_text(&parts).as_deref(), Some("ab"));
        assert_eq!(message_text(&json!({"message": {"content": "plain"}})).as_deref(), Some("plain"));
        assert_eq!(message_text(&json!({"deltaText": "x"})), None);
    }

    #[test]
    fn only_chat_events_of_the_run_are_taken() {
        let event = |name: &str, run: &str| EventFrame::new(name, json!({"runId": run, "state": "delta"}));
        assert!(run_chat_event(&event("chat", "r1"), "r1").is_some());
        assert!(run_chat_event(&event("chat", "r2"), "r1").is_none());
        assert!(run_chat_event(&event("agent", "r1"), "r1").is_none());
    }

    #[test]
    fn keys_are_fresh() {
        assert_ne!(new_key(), new_key());
    }
}
