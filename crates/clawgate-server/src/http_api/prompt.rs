//! Turning an OpenAI-style conversation (chat `messages`, Responses `input` items) into one agent
//! turn, as the real gateway does: system/developer text becomes extra system prompt, the last
//! user (or tool) entry is the message, and earlier entries ride along as quoted context. The
//! session's own transcript still supplies the real history; the quoted context covers clients
//! that resend the whole conversation on a fresh, stateless session.

use serde_json::Value;

/// Marks the quoted earlier turns.
const HISTORY_MARKER: &str = "[Chat messages since your last reply - for context]";
/// Marks the message to answer.
const CURRENT_MARKER: &str = "[Current message - respond to this]";

/// Who said an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The client's user.
    User,
    /// An earlier model answer.
    Assistant,
    /// A tool result the client ran.
    Tool,
}

/// One conversation entry with text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) role: Role,
    /// `User`, `Assistant`, `Tool` or `Tool:<name>`.
    pub(crate) sender: String,
    pub(crate) body: String,
}

impl Entry {
    pub(crate) fn new(role: Role, name: Option<&str>, body: String) -> Self {
        let sender = match (role, name.map(str::trim).filter(|n| !n.is_empty())) {
            (Role::User, _) => "User".to_owned(),
            (Role::Assistant, _) => "Assistant".to_owned(),
            (Role::Tool, Some(name)) => format!("Tool:{name}"),
            (Role::Tool, None) => "Tool".to_owned(),
        };
        Self { role, sender, body }
    }
}

/// The turn to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    pub(crate) message: String,
    pub(crate) extra_system: Option<String>,
}

/// Text of an OpenAI content value: a string, or the `text`/`input_text`/`output_text` parts of
/// an array joined by newlines. Anything else (images, audio) contributes no text. Takes the
/// value so a lone string is moved out, not copied (request bodies may be 20 MB of text).
pub(crate) fn content_text(content: Value) -> String {
    match content {
        Value::String(s) => s,
        Value::Array(parts) => {
            let texts: Vec<String> = parts
                .into_iter()
                .filter_map(|mut p| {
                    let key = match p.get("type").and_then(Value::as_str) {
                        Some("text" | "input_text" | "output_text") => "text",
                        _ => "input_text",
                    };
                    match p.get_mut(key).map(Value::take) {
                        Some(Value::String(t)) if !t.is_empty() => Some(t),
                        _ => None,
                    }
                })
                .collect();
            if texts.len() == 1 { texts.into_iter().next().unwrap_or_default() } else { texts.join("\n") }
        }
        _ => String::new(),
    }
}

/// `s` without leading and trailing whitespace, trimmed in place (no second copy of the text).
pub(crate) fn trimmed(mut s: String) -> String {
    let end = s.trim_end().len();
    s.truncate(end);
    let start = s.len() - s.trim_start().len();
    s.drain(..start);
    s
}

/// `s` trimmed in place, or `None` when nothing is left. A message keeps its whitespace when it
/// has text (as the string form of Responses `input` always did).
pub(crate) fn trimmed_or_whole(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

/// Build the turn. `None` when there is no user or tool entry to answer. The entries are
/// consumed: a lone message is moved into the turn, a conversation is written once.
pub(crate) fn build(system: Vec<String>, mut entries: Vec<Entry>) -> Option<Prompt> {
    let current = entries.iter().rposition(|e| matches!(e.role, Role::User | Role::Tool))?;
    let extra_system = (!system.is_empty()).then(|| system.join("\n\n"));
    if current == 0 {
        let message = entries.swap_remove(0).body;
        return Some(Prompt { message, extra_system });
    }
    let entry = &entries[current];
    let size: usize = entries[..=current].iter().map(|e| e.sender.len() + e.body.len() + 3).sum::<usize>()
        + HISTORY_MARKER.len()
        + CURRENT_MARKER.len()
        + 4;
    let mut message = String::with_capacity(size);
    message.push_str(HISTORY_MARKER);
    message.push('\n');
    for (i, e) in entries[..current].iter().enumerate() {
        if i > 0 {
            message.push('\n');
        }
        message.push_str(&e.sender);
        message.push_str(": ");
        message.push_str(&e.body);
    }
    message.push_str("\n\n");
    message.push_str(CURRENT_MARKER);
    message.push('\n');
    message.push_str(&entry.sender);
    message.push_str(": ");
    message.push_str(&entry.body);
    Some(Prompt { message, extra_system })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(text: &str) -> Entry {
        Entry::new(Role::User, None, text.into())
    }

    #[test]
    fn a_single_user_message_is_the_message_itself() {
        let p = build(vec![], vec![user("hi")]).unwrap();
        assert_eq!(p, Prompt { message: "hi".into(), extra_system: None });
    }

    #[test]
    fn earlier_turns_are_quoted_and_system_text_joined() {
        let entries = vec![user("one"), Entry::new(Role::Assistant, None, "two".into()), user("three")];
        let p = build(vec!["be brief".into(), "be kind".into()], entries).unwrap();
        assert_eq!(p.extra_system.as_deref(), Some("be brief\n\nbe kind"));
        assert_eq!(p.message, format!("{HISTORY_MARKER}\nUser: one\nAssistant: two\n\n{CURRENT_MARKER}\nUser: three"));
    }

    #[test]
    fn trailing_assistant_turns_do_not_become_the_message() {
        let entries = vec![user("q"), Entry::new(Role::Assistant, None, "a".into())];
        assert_eq!(build(vec![], entries).unwrap().message, "q");
        assert_eq!(build(vec!["sys".into()], vec![Entry::new(Role::Assistant, None, "a".into())]), None);
    }

    #[test]
    fn content_text_reads_strings_and_text_parts() {
        assert_eq!(content_text(json!("x")), "x");
        let parts = json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}},
                           {"type": "input_text", "text": "b"}]);
        assert_eq!(content_text(parts), "a\nb");
        assert_eq!(content_text(json!(42)), "");
        assert_eq!(trimmed("  a b \n".into()), "a b");
        assert_eq!(trimmed(" \t ".into()), "");
    }
}
