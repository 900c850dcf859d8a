//! The context window of active sessions: the newest messages a model request of the session
//! needs, kept in memory so a turn does not re-read and re-parse the transcript's tail.
//!
//! The store stays the source of truth. A window is a copy of the newest model-visible entries
//! of one transcript (its session id), kept in step by the run's own appends: an append whose
//! `seq` is not the next one (another writer — `chat.inject`, a system event — appended in
//! between) drops the window, and so do a compaction, a new transcript id (reset, delete) and
//! eviction. A dropped or missing window is rebuilt from the store by the next turn.
//!
//! Bounds: [`MAX_CONTEXT_MESSAGES`] messages and [`MAX_WINDOW_BYTES`] of text per window (the
//! oldest leave first; a session whose newest message alone is larger keeps no window),
//! [`MAX_WINDOWS`] windows (the least recently used goes), and a window unused for
//! [`IDLE_EVICT`] is dropped: at most 32 MiB of text in all, and nothing once the gateway idles.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use clawgate_llm::ChatMessage;
use clawgate_store::{EntryStatus, TranscriptEntry, TranscriptRole};

use super::config::MAX_CONTEXT_MESSAGES;
use super::transcript::{estimate_tokens, text_of};

/// Text bytes one window keeps at most: the default budget (32 000 tokens, about 128 KiB) twice
/// over. A model with a bigger budget reads the rest from the store, as without the window.
pub const MAX_WINDOW_BYTES: usize = 256 * 1024;
/// Windows kept at most; past it the least recently used is dropped.
pub const MAX_WINDOWS: usize = 128;
/// A window unused this long is dropped.
pub const IDLE_EVICT: Duration = Duration::from_secs(10 * 60);

/// One model-visible transcript message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    role: TranscriptRole,
    text: String,
    /// The run of a user message (a stateless run's model input replaces its stored excerpt).
    run_id: Option<String>,
    /// [`estimate_tokens`] of the text.
    cost: usize,
}

/// The newest messages of one transcript.
#[derive(Debug)]
struct Window {
    session_id: String,
    /// Oldest first.
    messages: VecDeque<Message>,
    bytes: usize,
    /// The newest entry's seq (model-visible or not): the next append must be this + 1.
    last_seq: i64,
    /// Whether `messages` holds every model-visible entry since the transcript's start (nothing
    /// was cut off by the bounds or left unread).
    from_start: bool,
    last_used: Instant,
}

impl Window {
    fn push(&mut self, m: Message) {
        self.bytes += m.text.len();
        self.messages.push_back(m);
        while self.messages.len() > MAX_CONTEXT_MESSAGES || (self.bytes > MAX_WINDOW_BYTES && self.messages.len() > 1) {
            if let Some(old) = self.messages.pop_front() {
                self.bytes -= old.text.len();
                self.from_start = false;
            }
        }
    }
}

/// What a turn needs of a transcript entry: its model-visible message, if it has one. A blank
/// user message is kept: a stateless run's model input may replace it ([`select`] skips blanks).
fn message_of(e: &TranscriptEntry) -> Option<Message> {
    if e.status != EntryStatus::Final || e.role == TranscriptRole::Tool {
        return None;
    }
    let text = match e.content.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => text_of(&json!({"content": other})),
        None => String::new(),
    };
    if e.role != TranscriptRole::User && text.trim().is_empty() {
        return None;
    }
    // A client's context is read after its message, as quoted data.
    let text = match e.role {
        TranscriptRole::User => match super::TurnContext::of_message(&e.content) {
            Some(ctx) => ctx.apply(&text),
            None => text,
        },
        _ => text,
    };
    let cost = estimate_tokens(&text);
    Some(Message { role: e.role, text, run_id: e.run_id.clone(), cost })
}

/// The context windows of the active sessions, by session key.
#[derive(Debug)]
pub(crate) struct ContextWindows {
    windows: Mutex<HashMap<String, Window>>,
    max_windows: usize,
    idle: Duration,
    stats: Mutex<WindowStats>,
}

/// How often a turn's context came from a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Contexts built from a window.
    pub hits: u64,
    /// Contexts read from the store (no window, or it did not reach far enough).
    pub misses: u64,
}

impl Default for ContextWindows {
    fn default() -> Self {
        Self::new(MAX_WINDOWS, IDLE_EVICT)
    }
}

impl ContextWindows {
    pub(crate) fn new(max_windows: usize, idle: Duration) -> Self {
        Self { windows: Mutex::default(), max_windows, idle, stats: Mutex::default() }
    }

    pub(crate) fn stats(&self) -> WindowStats {
        *self.stats.lock()
    }

    /// Sessions with a window.
    pub(crate) fn len(&self) -> usize {
        self.windows.lock().len()
    }

    /// Drop the window of `session_key` (compaction, reset, delete).
    pub(crate) fn forget(&self, session_key: &str) {
        self.windows.lock().remove(session_key);
    }

    /// Drop every window.
    pub(crate) fn clear(&self) {
        self.windows.lock().clear();
    }

    /// An entry the run appended to `session_id`: it joins the window when it is the very next
    /// entry; otherwise the window missed something and is dropped.
    pub(crate) fn appended(&self, session_key: &str, session_id: &str, entry: &TranscriptEntry) {
        let mut windows = self.windows.lock();
        let Some(w) = windows.get_mut(session_key) else { return };
        if w.session_id != session_id || entry.seq != w.last_seq + 1 {
            windows.remove(session_key);
            return;
        }
        w.last_seq = entry.seq;
        if let Some(m) = message_of(entry) {
            w.push(m);
        }
        if w.bytes > MAX_WINDOW_BYTES {
            // One message over the bound: not kept in memory (the store has it).
            windows.remove(session_key);
        }
    }

    /// The context of a turn from the window, as [`select`] would pick it from the store; `None`
    /// when there is no window of this transcript or it does not reach back far enough.
    pub(crate) fn context(
        &self,
        session_key: &str,
        session_id: &str,
        budget_tokens: usize,
        whole: &mut Option<(String, String)>,
    ) -> Option<Vec<ChatMessage>> {
        let now = Instant::now();
        let mut windows = self.windows.lock();
        windows.retain(|_, w| now.duration_since(w.last_used) < self.idle);
        let picked = match windows.get_mut(session_key) {
            Some(w) if w.session_id == session_id => {
                w.last_used = now;
                select(w.messages.iter().rev().cloned(), w.from_start, budget_tokens, whole)
            }
            Some(_) => {
                windows.remove(session_key);
                None
            }
            None => None,
        };
        drop(windows);
        let mut stats = self.stats.lock();
        if picked.is_some() {
            stats.hits += 1;
        } else {
            stats.misses += 1;
        }
        picked
    }

    /// A window built from the store's newest entries (`newest_first`, as read) after a miss.
    /// `last_seq` is the transcript's newest seq; `reached_start` whether the read went back to
    /// the transcript's first entry.
    pub(crate) fn rebuild(
        &self,
        session_key: &str,
        session_id: &str,
        last_seq: i64,
        newest_first: Vec<TranscriptEntry>,
        reached_start: bool,
    ) {
        let mut w = Window {
            session_id: session_id.to_owned(),
            messages: VecDeque::new(),
            bytes: 0,
            last_seq,
            from_start: false,
            last_used: Instant::now(),
        };
        let mut kept: Vec<Message> = Vec::new();
        let mut bytes = 0;
        let mut cut = false;
        for e in &newest_first {
            let Some(m) = message_of(e) else { continue };
            if kept.len() >= MAX_CONTEXT_MESSAGES || (bytes + m.text.len() > MAX_WINDOW_BYTES && !kept.is_empty()) {
                cut = true;
                break;
            }
            bytes += m.text.len();
            kept.push(m);
        }
        w.from_start = reached_start && !cut;
        for m in kept.into_iter().rev() {
            w.push(m);
        }
        if w.bytes > MAX_WINDOW_BYTES || self.max_windows == 0 {
            return;
        }
        let mut windows = self.windows.lock();
        if !windows.contains_key(session_key) && windows.len() >= self.max_windows {
            let oldest = windows.iter().min_by_key(|(_, w)| w.last_used).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                windows.remove(&k);
            }
        }
        windows.insert(session_key.to_owned(), w);
    }
}

/// The messages a model request carries, chosen from the newest back: every message that fits
/// `budget_tokens` (the newest always), at most [`MAX_CONTEXT_MESSAGES`], oldest first, never
/// starting with an assistant message. `whole` is `(run id, message)` of a stateless run whose
/// stored user entry is an excerpt: the model reads the whole message instead (it is moved out
/// of `whole` when the choice succeeds). `None` when the messages run out before the budget or
/// the count stops the choice and they do not reach back to the transcript's start
/// (`complete` false): the caller must read further back.
pub(crate) fn select(
    newest_first: impl Iterator<Item = Message>,
    complete: bool,
    budget_tokens: usize,
    whole: &mut Option<(String, String)>,
) -> Option<Vec<ChatMessage>> {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut used = 0usize;
    let mut stopped = false;
    // Where the whole message goes once the choice is made (it is not copied before).
    let mut whole_at = None;
    for m in newest_first {
        let is_whole = whole_at.is_none()
            && m.role == TranscriptRole::User
            && matches!((whole.as_ref(), m.run_id.as_deref()), (Some((run, _)), Some(id)) if run == id);
        let (text, cost) = match (is_whole, whole.as_ref()) {
            (true, Some((_, w))) => {
                if w.trim().is_empty() {
                    continue;
                }
                (String::new(), estimate_tokens(w))
            }
            _ => {
                if m.text.trim().is_empty() {
                    continue;
                }
                (m.text, m.cost)
            }
        };
        if (used + cost > budget_tokens && !out.is_empty()) || out.len() >= MAX_CONTEXT_MESSAGES {
            stopped = true;
            break;
        }
        used += cost;
        if is_whole {
            whole_at = Some(out.len());
        }
        out.push(match m.role {
            TranscriptRole::User => ChatMessage::user(text),
            TranscriptRole::Assistant => ChatMessage::assistant(text),
            TranscriptRole::System => ChatMessage::system(text),
            TranscriptRole::Tool => continue,
        });
        // The count is full: nothing older could join, so the choice is made here. (Waiting to
        // see one message more made a window of exactly MAX_CONTEXT_MESSAGES messages — every
        // session past ~100 turns — answer "read further back": each turn re-read and re-parsed
        // 250 transcript entries from the store, 1.5 → 3+ ms of CPU per turn.)
        if out.len() >= MAX_CONTEXT_MESSAGES {
            stopped = true;
            break;
        }
    }
    if !stopped && !complete {
        return None;
    }
    if let (Some(at), Some((_, w))) = (whole_at, whole.take()) {
        out[at] = ChatMessage::user(w);
    }
    out.reverse();
    // A conversation sent to a model starts with the user; drop leading assistant turns.
    let lead = out.iter().take_while(|m| matches!(m, ChatMessage::Assistant { .. })).count();
    out.drain(..lead);
    Some(out)
}

/// Model-visible messages of stored entries, newest first (for [`select`] over a store read).
pub(crate) fn messages_of(newest_first: &[TranscriptEntry]) -> impl Iterator<Item = Message> + '_ {
    newest_first.iter().filter_map(message_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, role: TranscriptRole, text: &str) -> TranscriptEntry {
        TranscriptEntry {
            session_id: "s".into(),
            seq,
            role,
            content: json!({"role": role.as_str(), "content": text}),
            run_id: None,
            status: EntryStatus::Final,
            created_at_ms: 1,
        }
    }

    #[test]
    fn a_window_holding_the_most_messages_a_context_takes_answers_without_the_store() {
        let w = ContextWindows::default();
        let count = i64::try_from(MAX_CONTEXT_MESSAGES).expect("fits");
        // A long session: the window was cut to its newest MAX_CONTEXT_MESSAGES messages.
        let newest_first: Vec<TranscriptEntry> = (1..=count + 50)
            .rev()
            .map(|seq| {
                let role = if seq % 2 == 1 { TranscriptRole::User } else { TranscriptRole::Assistant };
                entry(seq, role, &format!("m{seq}"))
            })
            .collect();
        w.rebuild("a", "s", count + 50, newest_first, false);
        let picked = w.context("a", "s", usize::MAX / 2, &mut None).expect("served from the window");
        assert_eq!(picked.len(), MAX_CONTEXT_MESSAGES);
        assert_eq!(picked.last(), Some(&ChatMessage::assistant(format!("m{}", count + 50))));
        assert_eq!(w.stats(), WindowStats { hits: 1, misses: 0 });
        // The next turn's append keeps it full, and it still answers (its oldest message is now
        // an assistant's, which a context never starts with: one fewer).
        w.appended("a", "s", &entry(count + 51, TranscriptRole::User, "next"));
        let next = w.context("a", "s", usize::MAX / 2, &mut None).expect("still served");
        assert_eq!((next.len(), next.last()), (MAX_CONTEXT_MESSAGES - 1, Some(&ChatMessage::user("next"))));
        assert_eq!(next.first(), Some(&ChatMessage::user(format!("m{}", 53))));
        assert_eq!(w.stats(), WindowStats { hits: 2, misses: 0 });
    }

    #[test]
    fn the_least_recently_used_and_idle_windows_go() {
        let w = ContextWindows::new(2, Duration::from_secs(3600));
        for key in ["a", "b", "c"] {
            w.rebuild(key, "s", 1, vec![entry(1, TranscriptRole::User, "hi")], true);
        }
        assert_eq!(w.len(), 2);
        assert!(w.context("a", "s", 100, &mut None).is_none(), "the oldest went");
        assert!(w.context("c", "s", 100, &mut None).is_some());
        let idle = ContextWindows::new(8, Duration::ZERO);
        idle.rebuild("a", "s", 1, vec![entry(1, TranscriptRole::User, "hi")], true);
        assert!(idle.context("a", "s", 100, &mut None).is_none(), "idle: dropped");
        assert_eq!(idle.len(), 0);
    }

    #[test]
    fn a_window_cut_by_its_bounds_sends_a_turn_that_needs_more_to_the_store() {
        let w = ContextWindows::default();
        let big = "x".repeat(MAX_WINDOW_BYTES / 2 + 1);
        let read = vec![entry(3, TranscriptRole::User, &big), entry(2, TranscriptRole::Assistant, &big)];
        w.rebuild("a", "s", 3, read, true);
        // Only the newest fits the byte bound: a budget for both cannot be answered here.
        assert!(w.context("a", "s", usize::MAX / 2, &mut None).is_none());
        // A message over the bound on its own is not kept at all, read or appended.
        let huge = "x".repeat(MAX_WINDOW_BYTES + 1);
        w.rebuild("h", "s", 1, vec![entry(1, TranscriptRole::User, &huge)], true);
        assert!(w.context("h", "s", usize::MAX / 2, &mut None).is_none());
        w.rebuild("h", "s", 1, vec![entry(1, TranscriptRole::User, "small")], true);
        w.appended("h", "s", &entry(2, TranscriptRole::Assistant, &huge));
        assert!(w.context("h", "s", usize::MAX / 2, &mut None).is_none(), "dropped");
        // Not from the start, but the budget stops the choice inside the window: answered.
        let read = vec![entry(3, TranscriptRole::User, "b"), entry(2, TranscriptRole::Assistant, "a")];
        w.rebuild("a", "s", 3, read, false);
        let small = w.context("a", "s", 1, &mut None).expect("the newest message is always sent");
        assert_eq!(small, [ChatMessage::user("b")]);
        // An append that skips a seq drops the window.
        w.appended("a", "s", &entry(5, TranscriptRole::User, "late"));
        assert_eq!(w.len(), 0);
    }
}
