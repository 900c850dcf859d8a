//! `sessions.list|describe|preview|patch|reset|delete|subscribe` and
//! `sessions.messages.subscribe|unsubscribe`: params and results.
//!
//! Unknown params are ignored, as they always were (the schema's objects are closed, but
//! clients send fields of newer protocol versions). The `expecting` names keep the texts of
//! "invalid type" errors clients have always seen.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{AnyParams, lenient};

/// The kind of a session (schema `SessionRow.kind`). clawgate keeps direct sessions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// One conversation with one agent.
    Direct,
}

/// A stored session as the lists, `sessions.describe` and `chat.history.sessionInfo` show it
/// (schema `SessionRow`, an open object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    /// `agent:<agentId>:<rest>`.
    pub key: String,
    /// The current transcript's id.
    pub session_id: String,
    /// The owning agent.
    pub agent_id: String,
    /// Always [`SessionKind::Direct`].
    pub kind: SessionKind,
    /// First use (ms since the epoch).
    pub created_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
    /// Newest transcript entry (ms since the epoch); `null` while empty.
    pub last_interaction_at: Option<i64>,
    /// Entries in the current transcript.
    pub message_count: u64,
    /// Hidden from default lists.
    pub archived: bool,
    /// Pinned by an operator.
    pub pinned: bool,
    /// Marked unread.
    pub unread: bool,
    /// The session is its agent's `main` one.
    pub is_main: bool,
    /// Operator-given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The newest transcript message (`sessions.list {includeLastMessage: true}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Value>,
    /// Everything else `sessions.patch` stored (model override, `thinkingLevel`, …), never one
    /// of [`Self::FIELDS`] (the builder drops those) nor `lastMessage` when that is set.
    #[serde(flatten)]
    pub meta: Map<String, Value>,
}

impl SessionEntry {
    /// The wire names of the facts above, which `meta` never repeats (`lastMessage` is dropped
    /// from `meta` only when the list sets it).
    pub const FIELDS: &'static [&'static str] = &[
        "key",
        "sessionId",
        "agentId",
        "kind",
        "createdAt",
        "updatedAt",
        "lastInteractionAt",
        "messageCount",
        "archived",
        "pinned",
        "unread",
        "isMain",
        "label",
    ];
}

/// A session that is not stored yet (a client names it before its first message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsavedSession {
    /// `agent:<agentId>:<rest>`.
    pub key: String,
    /// The agent it would belong to.
    pub agent_id: String,
    /// [`SessionKind::Direct`] in `sessions.describe`; absent in `chat.history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<SessionKind>,
    /// `0` in `sessions.describe`; absent in `chat.history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_count: Option<u64>,
    /// Always `false`.
    pub archived: bool,
    /// Always `false`.
    pub pinned: bool,
    /// `false` in `sessions.describe`; absent in `chat.history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<bool>,
    /// Always `null`: it never changed.
    pub updated_at: Option<i64>,
}

/// A session as `sessions.describe` and `chat.history` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SessionInfo {
    /// A stored session.
    Stored(Box<SessionEntry>),
    /// A session named but not stored yet.
    Unsaved(UnsavedSession),
}

/// `sessions.list {archived}`: archived sessions are listed for `true` or `"all"`; any other
/// value (or none) hides them, as it always did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncludeArchived(pub bool);

impl<'de> Deserialize<'de> for IncludeArchived {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Self(v == Value::Bool(true) || v.as_str() == Some("all")))
    }
}

/// `sessions.list {limit?, offset?, agentId?, search?, archived?, includeLastMessage?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct ListParams")]
pub struct SessionsListParams {
    /// Page size (default 50, clamped to 1..=1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Sessions to skip.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Only this agent's sessions.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Substring of the key or label.
    #[serde(default)]
    pub search: Option<String>,
    /// Whether archived sessions are listed.
    #[serde(default)]
    pub archived: IncludeArchived,
    /// Add each session's newest message.
    #[serde(default)]
    pub include_last_message: Option<bool>,
}

/// `sessions.list` → one page of sessions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsListResult {
    /// When the list was read (ms since the epoch).
    pub ts: i64,
    /// Sessions in this page.
    pub count: usize,
    /// Sessions stored in all.
    pub total_count: u64,
    /// The page size used.
    pub limit_applied: usize,
    /// The offset of the next page; `null` on the last one.
    pub next_offset: Option<usize>,
    /// Whether a next page exists.
    pub has_more: bool,
    /// The page.
    pub sessions: Vec<SessionEntry>,
    /// What a session of the listed agent uses unless patched (the Control UI's model picker
    /// reads it); left out when the agent's model names no provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<SessionsDefaults>,
}

/// `sessions.list`'s `defaults`: the listed (or default) agent's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsDefaults {
    /// The provider id (`models.providers.<id>`).
    pub model_provider: String,
    /// The model id at that provider.
    pub model: String,
    /// The model's context window, when the config gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    /// The thinking levels a session may pick: clawgate sends no reasoning settings, so only
    /// `off`.
    pub thinking_levels: Vec<ThinkingLevel>,
    /// The same levels' ids.
    pub thinking_options: Vec<String>,
    /// The level in force.
    pub thinking_default: String,
    /// What a model choice applies to: `session` (`sessions.patch {model}`).
    pub model_selection_target: String,
}

/// A thinking level a session may pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThinkingLevel {
    /// Its id.
    pub id: String,
    /// Its label.
    pub label: String,
}

impl SessionsDefaults {
    /// The defaults for `provider/model` with its context window, thinking off.
    #[must_use]
    pub fn for_model(provider: &str, model: &str, context_tokens: Option<u64>) -> Self {
        Self {
            model_provider: provider.to_owned(),
            model: model.to_owned(),
            context_tokens,
            thinking_levels: vec![ThinkingLevel { id: "off".into(), label: "off".into() }],
            thinking_options: vec!["off".into()],
            thinking_default: "off".into(),
            model_selection_target: "session".into(),
        }
    }
}

/// `sessions.describe {key, agentId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct KeyParams")]
pub struct SessionsDescribeParams {
    /// Session key (a bare key belongs to `agentId` or the default agent).
    pub key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `sessions.describe` → `{session}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionsDescribeResult {
    /// The session, stored or about to be.
    pub session: SessionInfo,
}

/// `sessions.preview {keys, limit?, maxChars?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct PreviewParams")]
pub struct SessionsPreviewParams {
    /// Sessions to preview (the first 100).
    pub keys: Vec<String>,
    /// Messages per session (default 3, clamped to 1..=50).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Characters per message (default 200, at least 20).
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// What a preview found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewStatus {
    /// No such session.
    Missing,
    /// A session without messages.
    Empty,
    /// Messages follow.
    Ok,
}

/// One previewed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewItem {
    /// `user`, `assistant`, `system` or `tool`.
    pub role: String,
    /// Its text, cut to `maxChars` characters.
    pub text: String,
    /// Its transcript seq.
    pub seq: i64,
}

/// The preview of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionPreview {
    /// The full session key.
    pub key: String,
    /// What was found.
    pub status: PreviewStatus,
    /// The newest messages, oldest first.
    pub items: Vec<PreviewItem>,
}

/// `sessions.preview` → `{ts, previews}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsPreviewResult {
    /// When it was read (ms since the epoch).
    pub ts: i64,
    /// One per key, in the order asked.
    pub previews: Vec<SessionPreview>,
}

/// `sessions.patch {key, agentId?, expectedSessionId?, …changes}`: every field other than the
/// target and the `expected*` guards is stored in the session (null clears).
///
/// Decoded by hand to keep the texts clients have always seen: "must be object" and
/// "must have required property 'key'" (also for a `key` that is not a string); `agentId` and
/// `expectedSessionId` count only when they are strings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsPatchParams {
    /// Session key.
    pub key: String,
    /// The agent of a bare key.
    pub agent_id: Option<String>,
    /// Refuse the patch unless the session still has this id.
    pub expected_session_id: Option<String>,
    /// The changes (`label`, `pinned`, `archived`, `model`, `thinkingLevel`, …).
    pub patch: Map<String, Value>,
}

impl SessionsPatchParams {
    /// Fields that address or guard the patch and are never stored.
    pub const NOT_STORED: &'static [&'static str] = &[
        "key",
        "agentId",
        "expectedSessionId",
        "expectedLifecycleRevision",
        "expectedPermissionMode",
        "expectedMarkedUnreadAt",
    ];
}

impl<'de> Deserialize<'de> for SessionsPatchParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let Value::Object(mut obj) = Value::deserialize(d)? else { return Err(D::Error::custom("must be object")) };
        let string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let key = string(obj.get("key")).ok_or_else(|| D::Error::custom("must have required property 'key'"))?;
        let agent_id = string(obj.get("agentId"));
        let expected_session_id = string(obj.get("expectedSessionId"));
        obj.retain(|k, _| !Self::NOT_STORED.contains(&k.as_str()));
        Ok(Self { key, agent_id, expected_session_id, patch: obj })
    }
}

/// `sessions.patch` → `{ok: true, key, session}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionsPatchResult {
    /// Always `true`.
    pub ok: bool,
    /// The full session key.
    pub key: String,
    /// The session after the patch.
    pub session: SessionEntry,
}

/// `sessions.reset {key, agentId?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct KeyParams")]
pub struct SessionsResetParams {
    /// Session key.
    pub key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `sessions.reset` → `{ok: true, key, sessionId, session}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsResetResult {
    /// Always `true`.
    pub ok: bool,
    /// The full session key.
    pub key: String,
    /// The new transcript's id.
    pub session_id: String,
    /// The session after the reset.
    pub session: SessionEntry,
}

/// `sessions.delete {key, agentId?, deleteTranscript?, archivedOnly?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct DeleteParams")]
pub struct SessionsDeleteParams {
    /// Session key.
    pub key: String,
    /// The agent of a bare key.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Also delete the stored transcript (default `true`).
    #[serde(default)]
    pub delete_transcript: Option<bool>,
    /// Refuse unless the session is archived.
    #[serde(default)]
    pub archived_only: Option<bool>,
}

/// `sessions.delete` → `{ok: true, key, deleted, archived: []}` (schema `SessionsDeleteResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsDeleteResult {
    /// Always `true`.
    pub ok: bool,
    /// The full session key.
    pub key: String,
    /// Whether a stored session was deleted.
    pub deleted: bool,
    /// Transcripts archived instead of deleted (none: clawgate deletes or keeps them).
    pub archived: Vec<String>,
}

/// `sessions.subscribe` takes no params and ignores any.
pub type SessionsSubscribeParams = AnyParams;

/// `sessions.subscribe` → `{subscribed: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionsSubscribeResult {
    /// Always `true`.
    pub subscribed: bool,
}

/// What `sessions.messages.subscribe|unsubscribe` read before checking it: `key`, or its
/// `sessionKey` alias when `key` is absent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "struct SessionsMessagesParams")]
struct MessagesKeyRaw {
    #[serde(default, deserialize_with = "lenient::present")]
    key: Option<Value>,
    #[serde(default, deserialize_with = "lenient::present")]
    session_key: Option<Value>,
}

/// `sessions.messages.subscribe|unsubscribe {key}` (`sessionKey` is taken as an alias).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "MessagesKeyRaw")]
pub struct SessionsMessagesParams {
    /// Session key (not empty).
    pub key: String,
}

impl TryFrom<MessagesKeyRaw> for SessionsMessagesParams {
    type Error = &'static str;

    fn try_from(raw: MessagesKeyRaw) -> Result<Self, Self::Error> {
        // A present `key` wins, whatever it holds; only a non-empty string is a key.
        match raw.key.or(raw.session_key) {
            Some(Value::String(key)) if !key.is_empty() => Ok(Self { key }),
            _ => Err("must have required property 'key'"),
        }
    }
}

/// `sessions.messages.subscribe` params.
pub type SessionsMessagesSubscribeParams = SessionsMessagesParams;
/// `sessions.messages.unsubscribe` params.
pub type SessionsMessagesUnsubscribeParams = SessionsMessagesParams;

/// `sessions.messages.subscribe|unsubscribe` → `{subscribed, key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsMessagesResult {
    /// `true` after subscribe, `false` after unsubscribe.
    pub subscribed: bool,
    /// The full session key.
    pub key: String,
}
