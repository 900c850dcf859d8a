//! Per-turn token usage and its aggregation ([`UsageStore`]).
//!
//! A row is recorded for every assistant transcript entry that carries a `usage` object, in
//! the transaction that appends the entry (a trigger in the schema does it, so no append path
//! can forget). Rows outlive compaction and session deletion: they are the record of what was
//! spent. The store only counts tokens; prices (and so costs) belong to the caller, which
//! applies its configured prices to the per-model sums every query returns.

use std::future::Future;

use crate::Result;

/// How a day is cut from a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayZone {
    /// A fixed offset from UTC, in minutes east (0 for UTC).
    Offset(i32),
    /// The gateway host's local time zone (daylight saving time included).
    Local,
}

/// What one aggregated row is keyed by (besides provider and model, which every row has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    /// One key for the whole range (`""`).
    Total,
    /// The calendar day, `YYYY-MM-DD`, in the given zone.
    Day(DayZone),
    /// The agent id.
    Agent,
    /// The session key.
    Session,
    /// The quarter hour (`ts / 900 000` in decimal): fine enough for the caller to cut days in
    /// any time zone, daylight saving time and 15-minute offsets included.
    QuarterHour,
    /// The quarter hour, the transcript (session id) and the session key, as
    /// `"<ts / 900 000> <session id> <session key>"` (the first two hold no space, so the key is
    /// everything after the second): one query gives every session's sums by transcript
    /// generation and by any day or hour the caller cuts (`sessions.usage`).
    SessionQuarterHour,
}

/// An aggregation request: the turns in `[start_ms, end_ms]`, optionally of one agent or one
/// session, summed by `grouping` × provider × model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// First millisecond counted (inclusive).
    pub start_ms: i64,
    /// Last millisecond counted (inclusive).
    pub end_ms: i64,
    /// Only this agent's turns.
    pub agent_id: Option<String>,
    /// Only this session key's turns.
    pub session_key: Option<String>,
    /// The key of each row.
    pub grouping: UsageGrouping,
    /// Most rows returned; past it the result says `truncated`.
    pub limit: usize,
}

/// Token sums of one (key, provider, model).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageSum {
    /// The grouping key (a day, an agent id, a session key, or `""` for the total).
    pub key: String,
    /// The provider id of the turns.
    pub provider: String,
    /// The model id of the turns.
    pub model: String,
    /// How many turns.
    pub turns: i64,
    /// Input tokens (not read from cache).
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: i64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: i64,
    /// The newest turn's timestamp among them.
    pub last_ts: i64,
}

/// The rows of one aggregation, ordered by key, provider, model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSums {
    /// The sums.
    pub rows: Vec<UsageSum>,
    /// More rows matched than the query's `limit`; `rows` holds the first `limit`.
    pub truncated: bool,
}

/// One recorded turn, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct TurnUsage {
    /// When the assistant entry was appended (Unix epoch ms).
    pub ts: i64,
    /// The agent of the session.
    pub agent_id: String,
    /// The session key.
    pub session_key: String,
    /// The transcript (session id) the entry is in.
    pub session_id: String,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// The provider id.
    pub provider: String,
    /// The model id.
    pub model: String,
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Cache-read tokens.
    pub cache_read: i64,
    /// Cache-write tokens.
    pub cache_write: i64,
}

/// Recorded per-turn usage and its sums.
pub trait UsageStore: Send + Sync {
    /// Sums of the turns matching `query`, by its grouping × provider × model (SQL `GROUP BY`,
    /// at most `query.limit` rows).
    fn usage_sums(&self, query: &UsageQuery) -> impl Future<Output = Result<UsageSums>> + Send;

    /// The recorded turns in `[start_ms, end_ms]`, oldest first, at most `limit`.
    fn turn_usage(
        &self,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TurnUsage>>> + Send;
}
