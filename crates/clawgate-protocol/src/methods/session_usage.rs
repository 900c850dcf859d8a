//! `sessions.usage`: per-session token usage and cost over a day range, with the aggregates the
//! Control UI's usage page draws (openclaw 2026.9.6). Params follow the schema's
//! `SessionsUsageParams` (closed); upstream has no result definition, so the result follows what
//! its handler returns (`src/gateway/server-methods/usage.ts`, `src/shared/usage-aggregates.ts`).
//!
//! clawgate records one usage row per assistant turn (tokens, provider, model, time, session,
//! transcript), so everything derived from those is real. What it does not record is absent
//! (optional fields) or zero, and named where it is: user messages, tool calls and results, errors
//! and latency are not in the usage rows, delivery channels and session creators are not kept.

use serde::{Deserialize, Serialize};

use super::ui_startup::Nothing;
pub use super::usage::{CostUsageTotals, UsageCacheStatus};

/// `sessions.usage {key?, agentId?, agentScope?, creatorKey?, startDate?, endDate?, mode?, range?,
/// groupBy?, includeHistorical?, utcOffset?, timeZone?, limit?, includeContextWeight?}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsUsageParams {
    /// One session (not empty).
    #[serde(default)]
    pub key: Option<String>,
    /// One agent (default: the default agent).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `all`: every agent.
    #[serde(default)]
    pub agent_scope: Option<String>,
    /// Only sessions of this creator (a key of `creatorOptions`).
    #[serde(default)]
    pub creator_key: Option<String>,
    /// First day, `YYYY-MM-DD` (with `endDate`).
    #[serde(default)]
    pub start_date: Option<String>,
    /// Last day, `YYYY-MM-DD` (with `startDate`).
    #[serde(default)]
    pub end_date: Option<String>,
    /// `utc`, `gateway` or `specific`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `7d`, `30d`, `90d`, `1y` or `all`.
    #[serde(default)]
    pub range: Option<String>,
    /// `instance` (the current transcript of each session) or `family` (every transcript a
    /// session key has had, resets included).
    #[serde(default)]
    pub group_by: Option<String>,
    /// Deprecated alias of `groupBy: "family"`.
    #[serde(default)]
    pub include_historical: Option<bool>,
    /// `UTC±H[:MM]`, the fallback of `timeZone`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// An IANA zone for `mode: "specific"`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// At most this many sessions listed (default 50; the aggregates cover all).
    #[serde(default)]
    pub limit: Option<u64>,
    /// Include each session's context weight (clawgate records none: `null`).
    #[serde(default)]
    pub include_context_weight: Option<bool>,
}

/// Message counts. clawgate's usage rows are assistant turns: `assistant` (and `total`) count
/// them; user messages, tool calls, tool results and errors are not recorded there and are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    /// All counted messages (here: the assistant turns).
    pub total: u64,
    /// Not recorded: 0.
    pub user: u64,
    /// Assistant turns with usage.
    pub assistant: u64,
    /// Not recorded: 0.
    pub tool_calls: u64,
    /// Not recorded: 0.
    pub tool_results: u64,
    /// Not recorded: 0.
    pub errors: u64,
}

impl MessageCounts {
    /// The counts of `turns` assistant turns.
    pub fn turns(turns: u64) -> MessageCounts {
        MessageCounts { total: turns, assistant: turns, ..MessageCounts::default() }
    }

    /// Adds another's counts.
    pub fn add(&mut self, other: &MessageCounts) {
        self.total += other.total;
        self.user += other.user;
        self.assistant += other.assistant;
        self.tool_calls += other.tool_calls;
        self.tool_results += other.tool_results;
        self.errors += other.errors;
    }
}

/// One model's (or provider's) share.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
    /// The provider id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model id (absent in the by-provider list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Turns.
    pub count: u64,
    /// Their sums.
    pub totals: CostUsageTotals,
}

/// A day's sums, with `tokens` and `cost` as upstream's day rows carry them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyBreakdown {
    /// `YYYY-MM-DD` in the requested zone.
    pub date: String,
    /// `totals.totalTokens`.
    pub tokens: u64,
    /// `totals.totalCost`.
    pub cost: f64,
    /// The day's sums.
    #[serde(flatten)]
    pub totals: CostUsageTotals,
}

/// A day's message counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyMessageCounts {
    /// `YYYY-MM-DD` in the requested zone.
    pub date: String,
    /// The counts.
    #[serde(flatten)]
    pub counts: MessageCounts,
}

/// A UTC quarter hour's tokens (the usage page's hour-of-day chart).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarterHourTokens {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Quarter hour of that UTC day, 0 to 95.
    pub quarter_index: u32,
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read tokens.
    pub cache_read: u64,
    /// Cache-write tokens.
    pub cache_write: u64,
    /// All four.
    pub total_tokens: u64,
    /// USD at the configured prices.
    pub total_cost: f64,
}

/// A UTC quarter hour's message counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarterHourMessages {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Quarter hour of that UTC day, 0 to 95.
    pub quarter_index: u32,
    /// The counts.
    #[serde(flatten)]
    pub counts: MessageCounts,
}

/// One (day, provider, model).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyModelUsage {
    /// `YYYY-MM-DD` in the requested zone.
    pub date: String,
    /// The provider id.
    pub provider: String,
    /// The model id.
    pub model: String,
    /// Tokens.
    pub tokens: u64,
    /// USD at the configured prices.
    pub cost: f64,
    /// Turns.
    pub count: u64,
}

/// One session's usage in the range (upstream's session cost summary). `firstActivity`,
/// `durationMs`, `toolUsage` and `latency` are left out: the usage rows are kept by quarter hour
/// here, and tools and response times are not in them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCostSummary {
    /// The transcript (the current one; with `groupBy: "family"`, the newest).
    pub session_id: String,
    /// The newest turn (ms).
    pub last_activity: i64,
    /// Days with turns, in the requested zone.
    pub activity_dates: Vec<String>,
    /// Sums per day.
    pub daily_breakdown: Vec<DailyBreakdown>,
    /// Message counts per day.
    pub daily_message_counts: Vec<DailyMessageCounts>,
    /// Message counts per UTC quarter hour.
    pub utc_quarter_hour_message_counts: Vec<QuarterHourMessages>,
    /// Tokens per UTC quarter hour.
    pub utc_quarter_hour_token_usage: Vec<QuarterHourTokens>,
    /// Sums per (day, provider, model).
    pub daily_model_usage: Vec<DailyModelUsage>,
    /// Message counts over the range.
    pub message_counts: MessageCounts,
    /// Sums per model, largest cost first.
    pub model_usage: Vec<ModelUsage>,
    /// The session's sums over the range.
    #[serde(flatten)]
    pub totals: CostUsageTotals,
}

/// `instance` or `family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageScope {
    /// The session's current transcript.
    Instance,
    /// Every transcript the session key has had.
    Family,
}

/// One session of a [`SessionsUsageResult`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionUsageEntry {
    /// The session key.
    pub key: String,
    /// Its label, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its transcript (see [`SessionCostSummary::session_id`]).
    pub session_id: String,
    /// What the sums cover.
    pub scope: UsageScope,
    /// `family`: the key the transcripts are grouped under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_family_key: Option<String>,
    /// `family`: the session's current transcript.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_session_id: Option<String>,
    /// `family`: every transcript with turns in the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_session_ids: Option<Vec<String>>,
    /// `family`: how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub historical_instance_count: Option<usize>,
    /// The session's last change (ms), else its newest turn.
    pub updated_at: i64,
    /// Its agent.
    pub agent_id: String,
    /// Who created it: clawgate does not record it (upstream's unknown creator, `["unknown"]`).
    pub creator_key: String,
    /// The model set by `sessions.patch`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_override: Option<String>,
    /// Its usage in the range.
    pub usage: Option<SessionCostSummary>,
    /// clawgate records no system prompt report.
    pub has_context_weight: bool,
    /// `includeContextWeight: true` → `null` (none recorded); otherwise absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_weight: Option<Option<Nothing>>,
}

/// Tool use (not in the usage rows: always empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolsSummary {
    /// 0.
    pub total_calls: u64,
    /// 0.
    pub unique_tools: u64,
    /// None.
    pub tools: Vec<Nothing>,
}

/// An agent's sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUsage {
    /// The agent id.
    pub agent_id: String,
    /// Its sums.
    pub totals: CostUsageTotals,
}

/// A day's sums (`costDaily`, a creator's `daily`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatedTotals {
    /// `YYYY-MM-DD` in the requested zone.
    pub date: String,
    /// The sums.
    #[serde(flatten)]
    pub totals: CostUsageTotals,
}

/// Sessions active on the same set of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionActivity {
    /// The days.
    pub dates: Vec<String>,
    /// How many sessions.
    pub session_count: u64,
}

/// One creator's share (clawgate: every session is the unknown creator's).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatorUsage {
    /// The creator key.
    pub key: String,
    /// Its sums.
    pub totals: CostUsageTotals,
    /// Its sessions with turns.
    pub session_count: u64,
    /// Its sums per day.
    pub daily: Vec<DatedTotals>,
    /// Its sessions by the days they were active.
    pub session_activity: Vec<SessionActivity>,
}

/// A day's summary of every session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailySummary {
    /// `YYYY-MM-DD` in the requested zone.
    pub date: String,
    /// Tokens.
    pub tokens: u64,
    /// USD at the configured prices.
    pub cost: f64,
    /// Messages (assistant turns).
    pub messages: u64,
    /// Not recorded: 0.
    pub tool_calls: u64,
    /// Not recorded: 0.
    pub errors: u64,
}

/// The aggregates over every matching session (not only those listed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageAggregates {
    /// Sessions with turns in the range.
    pub session_count: u64,
    /// Their messages.
    pub messages: MessageCounts,
    /// Their tool use (not recorded).
    pub tools: ToolsSummary,
    /// Per model, largest cost first.
    pub by_model: Vec<ModelUsage>,
    /// Per provider, largest cost first.
    pub by_provider: Vec<ModelUsage>,
    /// Per agent, largest cost first.
    pub by_agent: Vec<AgentUsage>,
    /// Per delivery channel (not kept with sessions: empty).
    pub by_channel: Vec<Nothing>,
    /// Per creator.
    pub by_creator: Vec<CreatorUsage>,
    /// Sums per day.
    pub cost_daily: Vec<DatedTotals>,
    /// Response times per day (not recorded: empty).
    pub daily_latency: Vec<Nothing>,
    /// Per (day, provider, model).
    pub model_daily: Vec<DailyModelUsage>,
    /// Per day.
    pub daily: Vec<DailySummary>,
}

/// A creator the caller may filter by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatorOption {
    /// Its key (send as `creatorKey`).
    pub key: String,
}

/// `sessions.usage` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsUsageResult {
    /// When it was computed (ms).
    pub updated_at: i64,
    /// First day of the range.
    pub start_date: String,
    /// Last day of the range.
    pub end_date: String,
    /// The sessions, most recently updated first, at most `limit`.
    pub sessions: Vec<SessionUsageEntry>,
    /// Sums over every matching session.
    pub totals: CostUsageTotals,
    /// Aggregates over every matching session.
    pub aggregates: UsageAggregates,
    /// The creators of the matching sessions.
    pub creator_options: Vec<CreatorOption>,
    /// `fresh`, or `partial` when the range held more rows than one answer reads.
    pub cache_status: UsageCacheStatus,
}
