//! Chat commands every channel understands: `/new`, `/reset`, `/status`, `/help` (and
//! Telegram's `/start`). Anything else starting with `/` goes to the agent as text.

use std::sync::Arc;

use clawgate_channels::InboundMessage;
use clawgate_store::{SessionStore, StoreError};

use crate::gateway::Gateway;
use crate::time::now_ms;

/// `/cmd@botname args` → ("cmd", "args"), lowercased command.
pub(crate) fn parse(text: &str) -> Option<(String, &str)> {
    let t = text.trim_start();
    let rest = t.strip_prefix('/')?;
    let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let cmd = head.split('@').next().unwrap_or(head);
    if cmd.is_empty() || !cmd.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((cmd.to_ascii_lowercase(), args.trim()))
}

const HELP: &str = "Commands:\n/new or /reset — start a fresh conversation\n/status — this conversation's session and model\n/help — this list\n\nAnything else is sent to the assistant.";

/// Answer a command; `None` if the text is not one of ours.
pub(crate) async fn handle(
    gw: &Arc<Gateway>,
    session_key: &str,
    agent_id: &str,
    msg: &InboundMessage,
) -> Option<String> {
    let (cmd, _args) = parse(&msg.text)?;
    match cmd.as_str() {
        "help" | "start" => Some(HELP.to_owned()),
        "new" | "reset" => {
            let now = now_ms();
            let r = match gw.store.reset_session(session_key, now).await {
                Ok(_) => Ok(()),
                Err(StoreError::NotFound) => gw.store.ensure_session(session_key, agent_id, now).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    gw.broadcast_session_changed(session_key, "reset");
                    Some("Started a new conversation. Earlier messages are no longer part of the context.".to_owned())
                }
                Err(e) => Some(format!("Could not reset the conversation: {e}")),
            }
        }
        "status" => {
            let agents = gw.agents.agents();
            let model = agents.get(agent_id).map(|a| agents.model_for(a)).unwrap_or_else(|| "(unknown)".to_owned());
            let (count, active) = match gw.store.get_session(session_key).await {
                Ok(Some(s)) => (s.message_count, gw.agents.active_runs(session_key).len()),
                _ => (0, 0),
            };
            Some(format!(
                "Session: {session_key}\nAgent: {agent_id}\nModel: {model}\nMessages: {count}\nRunning: {active}\nGateway: clawgate {}",
                gw.version
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_commands_with_bot_suffix_and_args() {
        assert_eq!(parse("/new"), Some(("new".into(), "")));
        assert_eq!(parse("  /Status@my_bot extra words "), Some(("status".into(), "extra words")));
        assert_eq!(parse("hello /new"), None);
        assert_eq!(parse("/"), None);
        assert_eq!(parse("/path/to/file"), None);
    }
}
