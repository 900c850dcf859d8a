//! Records of chat sessions, their transcripts and their runs. Plain data: no I/O, no policy
//! (apart from [`merge_patch`], the pure function every backend applies for
//! [`crate::SessionStore::patch_session`]).

use serde_json::{Map, Value};

use crate::StoreError;

/// A chat session as stored: one per session key, pointing at its current transcript.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRecord {
    /// The session key clients address, e.g. `agent:main:main`.
    pub key: String,
    /// The agent the session belongs to (`main`).
    pub agent_id: String,
    /// UUID v4 naming the current transcript. A reset replaces it; the old transcript stays
    /// stored under the old id, so history is never rewritten, only no longer shown.
    pub session_id: String,
    /// Operator-given name (`sessions.patch {label}`).
    pub label: Option<String>,
    /// Everything else `sessions.patch` sets (model override, `thinkingLevel`, `pinned`,
    /// `archived`, …), always a JSON object. The store only reads `archived` (to hide
    /// archived sessions from lists); the rest means something to core alone.
    #[sqlx(json, try_from = "Map<String, Value>")]
    pub meta: Value,
    /// When the key was first used.
    pub created_at_ms: i64,
    /// Last change: creation, patch, reset or an appended transcript entry. Lists are
    /// ordered by it, newest first.
    pub updated_at_ms: i64,
    /// When the newest entry of the current transcript was appended; `None` while empty.
    pub last_message_at_ms: Option<i64>,
    /// Entries stored in the current transcript (after any compaction).
    #[sqlx(try_from = "i64")]
    pub message_count: u64,
}

/// Which sessions [`crate::SessionStore::list_sessions`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    /// At most this many sessions.
    pub limit: usize,
    /// Skip this many first (after filtering and ordering).
    pub offset: usize,
    /// Only sessions of this agent.
    pub agent_id: Option<String>,
    /// Only sessions whose key or label contains this text (ASCII case-insensitive).
    pub search: Option<String>,
    /// Also list sessions whose `meta.archived` is `true`.
    pub include_archived: bool,
}

impl Default for SessionQuery {
    /// Every session that is not archived.
    fn default() -> Self {
        SessionQuery { limit: usize::MAX, offset: 0, agent_id: None, search: None, include_archived: false }
    }
}

stored_enum! {
    /// Who a transcript entry comes from.
    TranscriptRole ("transcript role") {
        /// A message sent by a client (`chat.send`, `agent`, a channel).
        User => "user",
        /// The model's reply.
        Assistant => "assistant",
        /// A tool call's result.
        Tool => "tool",
        /// A system note (e.g. an injected event).
        System => "system",
    }
}

stored_enum! {
    /// How complete a transcript entry is.
    EntryStatus ("transcript entry status") {
        /// Complete.
        Final => "final",
        /// The run was aborted; the entry holds the partial reply streamed so far.
        Aborted => "aborted",
        /// The run failed; the entry records what was shown to the user.
        Error => "error",
    }
}

/// One stored transcript entry. Entries are only ever appended whole, never edited.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TranscriptEntry {
    /// The transcript (session id, not key) it belongs to.
    pub session_id: String,
    /// Position in the transcript: 1, 2, 3, … assigned by the store; never reused, not even
    /// after compaction.
    pub seq: i64,
    /// Who it comes from.
    pub role: TranscriptRole,
    /// The message as `chat.history` shows it, e.g. `{role:"user", content:"…", timestamp,
    /// idempotencyKey}` or `{role:"assistant", content:[{type:"text", text}], provider, model,
    /// usage, stopReason, …}`. Opaque to the store.
    pub content: Value,
    /// The run that produced (or was started by) it.
    pub run_id: Option<String>,
    /// Whether it is complete.
    pub status: EntryStatus,
    /// When it was appended.
    pub created_at_ms: i64,
}

stored_enum! {
    /// Which entry point queued a run.
    RunKind ("run kind") {
        /// `chat.send`.
        Chat => "chat",
        /// The `agent` method.
        Agent => "agent",
        /// An HTTP surface (`/v1/chat/completions`, `/v1/responses`, hooks).
        Http => "http",
    }
}

stored_enum! {
    /// Where a run stands.
    RunStatus ("run status") {
        /// Waiting for its session's lane.
        Queued => "queued",
        /// Holding its session's lane.
        Running => "running",
        /// Finished normally.
        Completed => "completed",
        /// Finished with an error.
        Failed => "failed",
        /// Stopped by `chat.abort` (or while still queued).
        Aborted => "aborted",
        /// Was running when the gateway died; found at the next start.
        Interrupted => "interrupted",
    }
}

impl RunStatus {
    /// Whether the run is over (everything but queued and running).
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// A run in the durable per-session queue.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RunRecord {
    /// The run id, which is the request's idempotency key.
    pub run_id: String,
    /// The session whose lane it runs in.
    pub session_key: String,
    /// Which entry point queued it.
    pub kind: RunKind,
    /// Where it stands.
    pub status: RunStatus,
    /// What to run: the message and its options, as core recorded them. Opaque to the store.
    pub request: Value,
    /// The outcome core recorded when it finished (e.g. the terminal payload to replay).
    pub result: Option<Value>,
    /// When it was queued.
    pub created_at_ms: i64,
    /// When it took the lane.
    pub started_at_ms: Option<i64>,
    /// When it finished (or was found interrupted).
    pub ended_at_ms: Option<i64>,
    /// The gateway that claimed it with [`crate::RunStore::start_next`] (its boot id); `None`
    /// while queued or when claimed without one.
    pub owner: Option<String>,
}

/// The transcript entry [`crate::RunStore::start_next`] writes with the claim of a run: into the
/// current transcript of the run's session, under the run's id, stamped with the claim's time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Who it comes from.
    pub role: TranscriptRole,
    /// The message (opaque to the store).
    pub content: Value,
    /// Whether it is complete.
    pub status: EntryStatus,
}

/// A run [`crate::RunStore::start_next`] started, with what was read and written in the same
/// transaction.
#[derive(Debug)]
pub struct StartedRun<T> {
    /// The run, now running (its `request` as the preparation left it).
    pub run: RunRecord,
    /// The run's session as it was before the entry was written; `None` when the key has no
    /// session (it was deleted while the run waited).
    pub session: Option<SessionRecord>,
    /// The entry written with the claim, when the preparation gave one and the session exists.
    pub entry: Option<TranscriptEntry>,
    /// What the preparation returned besides the entry.
    pub prepared: T,
}

/// Result of [`crate::RunStore::enqueue`].
#[derive(Debug, Clone, PartialEq)]
pub enum EnqueueOutcome {
    /// The run id was new; the run is queued.
    Inserted(RunRecord),
    /// A run with this id already exists (a retried request); it is returned untouched and
    /// nothing was queued.
    Existing(RunRecord),
}

impl EnqueueOutcome {
    /// The run, new or existing.
    pub fn record(&self) -> &RunRecord {
        match self {
            EnqueueOutcome::Inserted(run) | EnqueueOutcome::Existing(run) => run,
        }
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null`
/// deletes a key, anything else (arrays included) replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// What a `patch_session` patch does: the new label (if the patch touches it) and the new
/// meta. The patch must be an object and its `label`, if present, a string or `null`;
/// anything else is [`StoreError::Conflict`] (the caller sent a bad patch).
pub(crate) fn apply_session_patch(meta: &Value, patch: &Value) -> Result<(Option<Option<String>>, Value), StoreError> {
    let Value::Object(fields) = patch else {
        return Err(StoreError::Conflict("a session patch must be a JSON object".to_owned()));
    };
    let label = match fields.get("label") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(label)) => Some(Some(label.clone())),
        Some(_) => return Err(StoreError::Conflict("session label must be a string or null".to_owned())),
    };
    let mut rest = fields.clone();
    // The label lives in its own column; keeping a copy in meta would let them disagree.
    rest.remove("label");
    let mut meta = meta.clone();
    merge_patch(&mut meta, &Value::Object(rest));
    Ok((label, meta))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386 appendix A, those with object targets.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn session_patch_moves_label_out_of_meta() {
        let (label, meta) =
            apply_session_patch(&json!({"pinned": true}), &json!({"label": "Work", "x": 1})).expect("patch");
        assert_eq!(label, Some(Some("Work".to_owned())));
        assert_eq!(meta, json!({"pinned": true, "x": 1}));
        let (label, _) = apply_session_patch(&json!({}), &json!({"label": null})).expect("patch");
        assert_eq!(label, Some(None));
        let (label, _) = apply_session_patch(&json!({}), &json!({"pinned": false})).expect("patch");
        assert_eq!(label, None);
    }

    #[test]
    fn bad_session_patches_are_conflicts() {
        for patch in [json!([1]), json!("x"), json!(null), json!({"label": 3}), json!({"label": {"a": 1}})] {
            assert!(matches!(apply_session_patch(&json!({}), &patch), Err(StoreError::Conflict(_))), "{patch}");
        }
    }

    #[test]
    fn unknown_stored_spellings_are_corrupt() {
        assert!(matches!("weird".parse::<RunStatus>(), Err(StoreError::Corrupt(_))));
        assert!(matches!("Final".parse::<EntryStatus>(), Err(StoreError::Corrupt(_))));
        assert_eq!("interrupted".parse::<RunStatus>().ok(), Some(RunStatus::Interrupted));
        assert_eq!(TranscriptRole::Tool.to_string(), "tool");
        assert!(RunStatus::Interrupted.is_terminal());
        assert!(!RunStatus::Running.is_terminal());
    }
}
