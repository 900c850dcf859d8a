//! `usage.cost` and `usage.status`: the token usage recorded with every assistant turn
//! (`clawgate_store::UsageStore`), summed by the store and priced here with the prices in the
//! config in force (`models.providers.*.models[].cost`, USD per million tokens).
//!
//! A model without a price is never priced at 0: its turns add tokens, no cost, and are named
//! in `missingCostEntries`/`missingCostByModel` (and a group made only of them has `cost: null`).
//!
//! `sessions.usage` reads the same rows by (quarter hour, transcript, session) and builds each
//! session's summary and the usage page's aggregates from them (see [`sessions_usage`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Days, Local, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use clawgate_config::{Config, ModelCost};
use clawgate_protocol::methods::AnyParams;
use clawgate_protocol::methods::session_usage::{
    AgentUsage, CreatorOption, CreatorUsage, DailyBreakdown, DailyMessageCounts, DailyModelUsage, DailySummary,
    DatedTotals, MessageCounts, ModelUsage, QuarterHourMessages, QuarterHourTokens, SessionActivity,
    SessionCostSummary, SessionUsageEntry, SessionsUsageParams, SessionsUsageResult, ToolsSummary, UsageAggregates,
    UsageScope,
};
use clawgate_protocol::methods::usage::{
    CostUsageDaily, CostUsageGroup, CostUsageTotals, DaysParam, ProviderUsageSnapshot, UsageCacheStatus,
    UsageCostParams, UsageCostResult, UsageStatusResult,
};
use clawgate_store::{
    DayZone, SessionQuery, SessionRecord, SessionStore, UsageGrouping, UsageQuery, UsageStore, UsageSum,
};

use crate::agent::AgentService;
use crate::config_service::ConfigService;
use crate::error::CoreError;
use crate::gateway::Store;
use crate::time::now_ms;

/// The longest range one request may cover (ten years).
pub const MAX_RANGE_DAYS: i64 = 3_660;
/// Ranges up to this long list every day, with zeros for days without turns (upstream's
/// bound); longer ones list only days that have turns.
const MAX_ZERO_FILL_DAYS: i64 = 366;
/// Most (key, provider, model) sums read for one answer.
const MAX_SUMS: usize = 50_000;
/// What `usage.status` summarises.
const STATUS_DAYS: i64 = 30;
const QUARTER_HOUR_MS: i64 = 900_000;

/// How calendar days are cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A fixed offset from UTC in minutes east (0: UTC).
    Offset(i32),
    /// An IANA zone (daylight saving time applies).
    Named(Tz),
    /// The gateway host's zone.
    Local,
}

impl Zone {
    /// Upstream's reading of `mode`, `timeZone` and `utcOffset`: `specific` takes the zone,
    /// else the offset; `gateway` is the host's zone; anything else is UTC.
    pub fn from_params(mode: Option<&str>, time_zone: Option<&str>, utc_offset: Option<&str>) -> Result<Zone, String> {
        match mode {
            Some("gateway") => Ok(Zone::Local),
            Some("specific") => {
                let offset = utc_offset.and_then(parse_utc_offset);
                if let Some(name) = time_zone.map(str::trim).filter(|s| !s.is_empty()) {
                    return match (name.parse::<Tz>(), offset) {
                        (Ok(tz), _) => Ok(Zone::Named(tz)),
                        (Err(_), Some(minutes)) => Ok(Zone::Offset(minutes)),
                        (Err(_), None) => Err("invalid timeZone: expected a valid IANA time zone".to_owned()),
                    };
                }
                match (offset, utc_offset.map(str::trim).filter(|s| !s.is_empty())) {
                    (Some(minutes), _) => Ok(Zone::Offset(minutes)),
                    (None, Some(_)) => Err("invalid utcOffset: expected UTC-12:00 through UTC+14:00".to_owned()),
                    (None, None) => Ok(Zone::Offset(0)),
                }
            }
            _ => Ok(Zone::Offset(0)),
        }
    }

    /// The calendar day a timestamp falls on.
    pub fn day_of(&self, ms: i64) -> NaiveDate {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Zone::Offset(minutes) => (utc + chrono::Duration::minutes(i64::from(*minutes))).date_naive(),
            Zone::Named(tz) => utc.with_timezone(tz).date_naive(),
            Zone::Local => utc.with_timezone(&Local).date_naive(),
        }
    }

    /// The first millisecond of a day. A midnight that does not exist (a DST jump) starts the
    /// day at the first instant that does.
    pub fn start_of(&self, day: NaiveDate) -> i64 {
        let midnight = day.and_time(NaiveTime::MIN);
        let first = |offset_ms: Option<i64>| midnight.and_utc().timestamp_millis() - offset_ms.unwrap_or(0);
        match self {
            Zone::Offset(minutes) => first(Some(i64::from(*minutes) * 60_000)),
            Zone::Named(tz) => first(local_offset_ms(tz, midnight)),
            Zone::Local => first(local_offset_ms(&Local, midnight)),
        }
    }

    /// The store grouping that yields this zone's days (or slots to cut them from).
    fn grouping(&self) -> UsageGrouping {
        match self {
            Zone::Offset(minutes) => UsageGrouping::Day(DayZone::Offset(*minutes)),
            Zone::Local => UsageGrouping::Day(DayZone::Local),
            Zone::Named(_) => UsageGrouping::QuarterHour,
        }
    }
}

/// The UTC offset (ms east) in force at a local time, or right after it when that local time
/// does not exist.
fn local_offset_ms<Z: TimeZone>(zone: &Z, local: chrono::NaiveDateTime) -> Option<i64> {
    (0..=4).find_map(|quarter| {
        let probe = local + chrono::Duration::minutes(15 * quarter);
        zone.from_local_datetime(&probe)
            .earliest()
            .map(|t| i64::from(t.offset().fix().local_minus_utc()) * 1_000 - quarter * QUARTER_HOUR_MS)
    })
}

/// `UTC+H`, `UTC-HH`, `UTC+H:MM` → minutes east, within UTC-12:00..=UTC+14:00.
pub fn parse_utc_offset(raw: &str) -> Option<i32> {
    let rest = raw.trim().strip_prefix("UTC")?;
    let (sign, rest) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h, m.parse::<i32>().ok().filter(|m| *m < 60)?),
        Some(_) => return None,
        None => (rest, 0),
    };
    if hours.is_empty() || hours.len() > 2 || !hours.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let total = sign * (hours.parse::<i32>().ok()? * 60 + minutes);
    (-720..=840).contains(&total).then_some(total)
}

/// A strict `YYYY-MM-DD` calendar date.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    let b = raw.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

/// The days a request covers, inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayRange {
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
    /// How days are cut.
    pub zone: Zone,
}

impl DayRange {
    /// Days in the range.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    fn start_ms(&self) -> i64 {
        self.zone.start_of(self.start)
    }

    fn end_ms(&self) -> i64 {
        self.end.checked_add_days(Days::new(1)).map_or(i64::MAX, |next| self.zone.start_of(next) - 1)
    }
}

/// Upstream's range rules: `startDate`+`endDate` together, else `range`, else `days` (default
/// 30), ending today in the zone. Errors are upstream's messages where it has them.
pub fn resolve_range(p: &UsageCostParams, today_ms: i64) -> Result<DayRange, String> {
    for (field, value) in [("startDate", &p.start_date), ("endDate", &p.end_date)] {
        if let Some(raw) = value.as_deref().filter(|s| !s.trim().is_empty())
            && parse_date(raw).is_none()
        {
            return Err(format!("invalid {field}: expected a valid YYYY-MM-DD calendar date"));
        }
    }
    let zone = Zone::from_params(p.mode.as_deref(), p.time_zone.as_deref(), p.utc_offset.as_deref())?;
    let today = zone.day_of(today_ms);
    let start = p.start_date.as_deref().and_then(parse_date);
    let end = p.end_date.as_deref().and_then(parse_date);
    let range = match (start, end) {
        (Some(start), Some(end)) => {
            if start > end {
                return Err("startDate must not be after endDate".to_owned());
            }
            DayRange { start, end, zone }
        }
        (None, None) => {
            let days = match p.range.as_deref() {
                Some("7d") => 7,
                Some("30d") => 30,
                Some("90d") => 90,
                Some("1y") => 365,
                Some("all") => MAX_RANGE_DAYS,
                Some(other) => return Err(format!("invalid range {other:?}: expected 7d, 30d, 90d, 1y or all")),
                None => days_param(p.days.as_ref())?.unwrap_or(30),
            };
            let back = u64::try_from(days.clamp(1, i64::from(u32::MAX)) - 1).unwrap_or(0);
            let start = today.checked_sub_days(Days::new(back)).ok_or_else(|| too_large(days))?;
            DayRange { start, end: today, zone }
        }
        _ => return Err("startDate and endDate must be provided together".to_owned()),
    };
    if range.days() > MAX_RANGE_DAYS {
        return Err(too_large(range.days()));
    }
    Ok(range)
}

fn too_large(days: i64) -> String {
    format!("range too large: {days} days; at most {MAX_RANGE_DAYS} days per request")
}

fn days_param(days: Option<&DaysParam>) -> Result<Option<i64>, String> {
    let n = match days {
        None => return Ok(None),
        Some(DaysParam::Number(n)) => *n,
        Some(DaysParam::Text(s)) if s.trim().is_empty() => return Ok(None),
        Some(DaysParam::Text(s)) => {
            s.trim().parse::<f64>().map_err(|_| format!("invalid days: {s:?} is not a number"))?
        }
    };
    if !n.is_finite() {
        return Err("invalid days: expected a whole number of days".to_owned());
    }
    if n > MAX_RANGE_DAYS as f64 {
        return Err(too_large(n as i64));
    }
    Ok(Some((n.floor() as i64).max(1)))
}

/// The configured prices, by provider and model id.
#[derive(Debug, Default)]
pub struct Prices(BTreeMap<String, BTreeMap<String, ModelCost>>);

impl Prices {
    /// The prices in a config.
    pub fn of(config: &Config) -> Prices {
        Prices(config.models.providers.iter().map(|(id, p)| (id.clone(), p.costs.clone())).collect())
    }

    fn get(&self, provider: &str, model: &str) -> Option<&ModelCost> {
        self.0.get(provider)?.get(model)
    }
}

/// Adds one (key, provider, model) sum to `totals`, priced when the model has a price.
fn add(totals: &mut CostUsageTotals, sum: &UsageSum, prices: &Prices) {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let (input, output, cache_read, cache_write) = (n(sum.input), n(sum.output), n(sum.cache_read), n(sum.cache_write));
    totals.input += input;
    totals.output += output;
    totals.cache_read += cache_read;
    totals.cache_write += cache_write;
    totals.total_tokens += input + output + cache_read + cache_write;
    totals.turns += n(sum.turns);
    match prices.get(&sum.provider, &sum.model) {
        Some(price) => {
            let usd = |tokens: u64, rate: f64| tokens as f64 * rate / 1_000_000.0;
            let parts = [
                usd(input, price.input),
                usd(output, price.output),
                usd(cache_read, price.cache_read),
                usd(cache_write, price.cache_write),
            ];
            totals.input_cost += parts[0];
            totals.output_cost += parts[1];
            totals.cache_read_cost += parts[2];
            totals.cache_write_cost += parts[3];
            totals.total_cost += parts.iter().sum::<f64>();
        }
        None => {
            totals.missing_cost_entries += n(sum.turns);
            *totals
                .missing_cost_by_model
                .get_or_insert_with(BTreeMap::new)
                .entry(format!("{}/{}", sum.provider, sum.model))
                .or_default() += n(sum.turns);
        }
    }
}

/// The breakdown dimension of `groupBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupBy {
    Agent,
    Model,
    Provider,
    Session,
}

impl GroupBy {
    fn parse(raw: &str) -> Result<GroupBy, String> {
        match raw {
            "agent" => Ok(GroupBy::Agent),
            "model" => Ok(GroupBy::Model),
            "provider" => Ok(GroupBy::Provider),
            "session" => Ok(GroupBy::Session),
            other => Err(format!("invalid groupBy {other:?}: expected agent, model, provider or session")),
        }
    }

    fn grouping(self) -> UsageGrouping {
        match self {
            GroupBy::Agent => UsageGrouping::Agent,
            GroupBy::Session => UsageGrouping::Session,
            GroupBy::Model | GroupBy::Provider => UsageGrouping::Total,
        }
    }

    fn key(self, sum: &UsageSum) -> String {
        match self {
            GroupBy::Agent | GroupBy::Session => sum.key.clone(),
            GroupBy::Model => format!("{}/{}", sum.provider, sum.model),
            GroupBy::Provider => sum.provider.clone(),
        }
    }
}

/// The day a store row belongs to: the row's key for day groupings, cut from its quarter hour
/// for a named zone.
fn day_key(zone: Zone, sum: &UsageSum) -> String {
    match zone {
        Zone::Named(_) => match sum.key.parse::<i64>() {
            Ok(slot) => zone.day_of(slot * QUARTER_HOUR_MS).format("%Y-%m-%d").to_string(),
            Err(_) => sum.key.clone(),
        },
        _ => sum.key.clone(),
    }
}

/// `usage.cost`: the turns of one agent (default: the default agent) or of all
/// (`agentScope: "all"`) over a day range, by day, priced from the config.
pub async fn usage_cost(
    config: &ConfigService,
    agents: &AgentService,
    store: &Store,
    p: UsageCostParams,
) -> Result<UsageCostResult, CoreError> {
    let range = resolve_range(&p, now_ms()).map_err(CoreError::invalid)?;
    let group_by = p.group_by.as_deref().map(GroupBy::parse).transpose().map_err(CoreError::invalid)?;
    let agent_id = p.agent_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let agent_id = match p.agent_scope.as_deref() {
        Some("all") if agent_id.is_some() => {
            return Err(CoreError::invalid("agentScope=all cannot be combined with agentId"));
        }
        Some("all") => None,
        Some(other) => return Err(CoreError::invalid(format!("invalid agentScope {other:?}: expected \"all\""))),
        None => Some(agent_id.map_or_else(|| agents.agents().default_id.clone(), str::to_owned)),
    };
    let prices = Prices::of(&config.current().config);
    let query = |grouping| UsageQuery {
        start_ms: range.start_ms(),
        end_ms: range.end_ms(),
        agent_id: agent_id.clone(),
        session_key: None,
        grouping,
        limit: MAX_SUMS,
    };

    let by_day = store.usage_sums(&query(range.zone.grouping())).await?;
    let mut truncated = by_day.truncated;
    let mut daily: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    if range.days() <= MAX_ZERO_FILL_DAYS {
        for day in range.start.iter_days().take_while(|d| *d <= range.end) {
            daily.insert(day.format("%Y-%m-%d").to_string(), CostUsageTotals::default());
        }
    }
    for sum in &by_day.rows {
        add(daily.entry(day_key(range.zone, sum)).or_default(), sum, &prices);
    }
    // The totals from their own (provider, model) sums: exact even when the day rows were cut
    // short (a long range in a named zone is summed by quarter hour).
    let mut totals = CostUsageTotals::default();
    let whole = store.usage_sums(&query(UsageGrouping::Total)).await?;
    truncated |= whole.truncated;
    for sum in &whole.rows {
        add(&mut totals, sum, &prices);
    }

    let groups = match group_by {
        None => None,
        Some(by) => {
            let sums = store.usage_sums(&query(by.grouping())).await?;
            truncated |= sums.truncated;
            let mut groups: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
            for sum in &sums.rows {
                add(groups.entry(by.key(sum)).or_default(), sum, &prices);
            }
            let mut groups: Vec<CostUsageGroup> = groups
                .into_iter()
                .map(|(key, totals)| {
                    let cost = (totals.missing_cost_entries < totals.turns).then_some(totals.total_cost);
                    CostUsageGroup { key, totals, cost }
                })
                .collect();
            groups.sort_by(|a, b| {
                b.cost
                    .unwrap_or(-1.0)
                    .total_cmp(&a.cost.unwrap_or(-1.0))
                    .then(b.totals.total_tokens.cmp(&a.totals.total_tokens))
            });
            Some(groups)
        }
    };

    Ok(UsageCostResult {
        updated_at: now_ms(),
        days: u32::try_from(range.days()).unwrap_or(u32::MAX),
        start_date: range.start.format("%Y-%m-%d").to_string(),
        end_date: range.end.format("%Y-%m-%d").to_string(),
        daily: daily.into_iter().map(|(date, totals)| CostUsageDaily { date, totals }).collect(),
        totals,
        cache_status: UsageCacheStatus::FRESH,
        group_by: group_by.and(p.group_by),
        groups,
        truncated,
    })
}

/// `usage.status`: one entry per configured provider. clawgate reads no provider quota or
/// billing API, so `windows` is empty; `summary` says what this gateway recorded of the
/// provider's use over the last 30 days, priced from the config.
pub async fn usage_status(
    config: &ConfigService,
    agents: &AgentService,
    store: &Store,
    _: AnyParams,
) -> Result<UsageStatusResult, CoreError> {
    let now = now_ms();
    let prices = Prices::of(&config.current().config);
    let query = UsageQuery {
        start_ms: now - STATUS_DAYS * 86_400_000,
        end_ms: now,
        agent_id: None,
        session_key: None,
        grouping: UsageGrouping::Total,
        limit: MAX_SUMS,
    };
    let sums = store.usage_sums(&query).await?;
    let mut by_provider: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    for sum in &sums.rows {
        add(by_provider.entry(sum.provider.clone()).or_default(), sum, &prices);
    }
    let registry = agents.registry();
    let providers = registry
        .ids()
        .map(|id| {
            let summary = match by_provider.get(id) {
                None => format!("no turns recorded in the last {STATUS_DAYS} days"),
                Some(t) => provider_summary(t),
            };
            ProviderUsageSnapshot {
                provider: id.to_owned(),
                display_name: id.to_owned(),
                windows: Vec::new(),
                summary: Some(summary),
            }
        })
        .collect();
    Ok(UsageStatusResult { updated_at: now, providers })
}

/// "last 30 days: 1234 tokens in 5 turns, $0.0123 at configured prices (2 turns unpriced)".
fn provider_summary(t: &CostUsageTotals) -> String {
    let cost = if t.missing_cost_entries >= t.turns {
        "no price configured".to_owned()
    } else if t.missing_cost_entries > 0 {
        format!("${:.4} at configured prices ({} turns unpriced)", t.total_cost, t.missing_cost_entries)
    } else {
        format!("${:.4} at configured prices", t.total_cost)
    };
    format!("last {STATUS_DAYS} days: {} tokens in {} turns, {cost}", t.total_tokens, t.turns)
}

/// Upstream's key of a session whose creator is not known; clawgate records no creators, so
/// every session has it.
pub const UNKNOWN_CREATOR_KEY: &str = r#"["unknown"]"#;
/// `limit` of `sessions.usage` when not given (upstream's).
const DEFAULT_SESSIONS_LIMIT: u64 = 50;
const DAY_MS: i64 = 86_400_000;

/// Adds one totals entry to another (upstream's `addCostUsageTotals`).
fn merge(target: &mut CostUsageTotals, source: &CostUsageTotals) {
    target.input += source.input;
    target.output += source.output;
    target.cache_read += source.cache_read;
    target.cache_write += source.cache_write;
    target.total_tokens += source.total_tokens;
    target.total_cost += source.total_cost;
    target.input_cost += source.input_cost;
    target.output_cost += source.output_cost;
    target.cache_read_cost += source.cache_read_cost;
    target.cache_write_cost += source.cache_write_cost;
    target.missing_cost_entries += source.missing_cost_entries;
    target.turns += source.turns;
    if let Some(by_model) = &source.missing_cost_by_model {
        let into = target.missing_cost_by_model.get_or_insert_with(BTreeMap::new);
        for (model, n) in by_model {
            *into.entry(model.clone()).or_default() += n;
        }
    }
}

/// One row of a `SessionQuarterHour` grouping: `"<slot> <session id> <session key>"`.
struct SlotRow<'a> {
    slot: i64,
    session_id: &'a str,
    session_key: &'a str,
    sum: &'a UsageSum,
}

fn slot_row(sum: &UsageSum) -> Option<SlotRow<'_>> {
    let (slot, rest) = sum.key.split_once(' ')?;
    let (session_id, session_key) = rest.split_once(' ')?;
    Some(SlotRow { slot: slot.parse().ok()?, session_id, session_key, sum })
}

/// Checks what `SessionsUsageParams` constrains beyond its types (upstream's schema), with the
/// schema's words.
fn check_sessions_usage_params(p: &SessionsUsageParams) -> Result<(), String> {
    let non_empty =
        [("key", &p.key), ("agentId", &p.agent_id), ("creatorKey", &p.creator_key), ("timeZone", &p.time_zone)];
    if let Some((field, _)) = non_empty.iter().find(|(_, v)| v.as_deref().is_some_and(str::is_empty)) {
        return Err(format!("invalid sessions.usage params: {field} must not be empty"));
    }
    let one_of = |field: &str, value: &Option<String>, allowed: &[&str]| match value.as_deref() {
        Some(v) if !allowed.contains(&v) => {
            Err(format!("invalid sessions.usage params: {field} must be one of {}", allowed.join(", ")))
        }
        _ => Ok(()),
    };
    one_of("agentScope", &p.agent_scope, &["all"])?;
    one_of("mode", &p.mode, &["utc", "gateway", "specific"])?;
    one_of("range", &p.range, &["7d", "30d", "90d", "1y", "all"])?;
    one_of("groupBy", &p.group_by, &["instance", "family"])?;
    if let Some(offset) = p.utc_offset.as_deref()
        && !utc_offset_shape(offset)
    {
        return Err("invalid sessions.usage params: utcOffset must look like UTC+2 or UTC-05:30".to_owned());
    }
    if p.limit == Some(0) {
        return Err("invalid sessions.usage params: limit must be at least 1".to_owned());
    }
    Ok(())
}

/// The schema's `^UTC[+-]\d{1,2}(?::[0-5]\d)?$` (the bounds are the range rules' to check).
fn utc_offset_shape(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix("UTC+").or_else(|| raw.strip_prefix("UTC-")) else { return false };
    let (hours, minutes) = rest.split_once(':').map_or((rest, None), |(h, m)| (h, Some(m)));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (1..=2).contains(&hours.len())
        && digits(hours)
        && minutes.is_none_or(|m| m.len() == 2 && digits(m) && m.as_bytes()[0] <= b'5')
}

/// `sessions.usage`: each session's turns over a day range (one agent, one session or all
/// agents), most recently updated first, and the aggregates of every matching session, priced
/// from the config. With `groupBy: "instance"` (the default) a session counts its current
/// transcript only; with `family` every transcript its key has had (resets included).
///
/// From the usage rows: tokens, costs, turns, days, quarter hours, models, agents, the newest
/// turn. Not recorded, so zero or empty (see `clawgate_protocol::methods::session_usage`): user
/// messages, tool calls and results, errors, latency, channels, creators, context weight.
pub async fn sessions_usage(
    config: &ConfigService,
    agents: &AgentService,
    store: &Store,
    p: SessionsUsageParams,
) -> Result<SessionsUsageResult, CoreError> {
    check_sessions_usage_params(&p).map_err(CoreError::invalid)?;
    let range_params = UsageCostParams {
        start_date: p.start_date.clone(),
        end_date: p.end_date.clone(),
        range: p.range.clone(),
        mode: p.mode.clone(),
        utc_offset: p.utc_offset.clone(),
        time_zone: p.time_zone.clone(),
        ..UsageCostParams::default()
    };
    let range = resolve_range(&range_params, now_ms()).map_err(CoreError::invalid)?;
    let all_agents = p.agent_scope.as_deref() == Some("all");
    if all_agents && (p.key.is_some() || p.agent_id.is_some()) {
        return Err(CoreError::invalid("agentScope=all cannot be combined with key or agentId"));
    }
    let (agent_id, session_key) = match (&p.key, all_agents) {
        (Some(key), _) => {
            let (key, agent) = crate::methods::chat::resolve_session_key(agents, key, p.agent_id.as_deref())?;
            (Some(agent), Some(key))
        }
        (None, true) => (None, None),
        (None, false) => {
            (Some(crate::methods::ui_pages::known_agent(agents, "sessions.usage", p.agent_id.as_deref())?), None)
        }
    };
    let family = p.group_by.as_deref() == Some("family") || p.include_historical == Some(true);
    let limit = usize::try_from(p.limit.unwrap_or(DEFAULT_SESSIONS_LIMIT)).unwrap_or(usize::MAX);

    let sums = store
        .usage_sums(&UsageQuery {
            start_ms: range.start_ms(),
            end_ms: range.end_ms(),
            agent_id: agent_id.clone(),
            session_key: session_key.clone(),
            grouping: UsageGrouping::SessionQuarterHour,
            limit: MAX_SUMS,
        })
        .await?;
    let records: HashMap<String, SessionRecord> = match &session_key {
        Some(key) => store.get_session(key).await?.into_iter().map(|r| (r.key.clone(), r)).collect(),
        None => {
            let query = SessionQuery { agent_id: agent_id.clone(), include_archived: true, ..SessionQuery::default() };
            store.list_sessions(&query).await?.into_iter().map(|r| (r.key.clone(), r)).collect()
        }
    };

    let mut by_session: BTreeMap<&str, Vec<SlotRow<'_>>> = BTreeMap::new();
    for row in sums.rows.iter().filter_map(slot_row) {
        by_session.entry(row.session_key).or_default().push(row);
    }
    let prices = Prices::of(&config.current().config);
    let default_agent = agents.agents().default_id.clone();
    let mut entries = Vec::with_capacity(by_session.len());
    for (key, rows) in by_session {
        let record = records.get(key);
        let newest = rows.iter().max_by_key(|r| r.sum.last_ts).map_or("", |r| r.session_id);
        let current = record.map_or(newest, |r| r.session_id.as_str());
        let rows: Vec<&SlotRow<'_>> = rows.iter().filter(|r| family || r.session_id == current).collect();
        if rows.is_empty() {
            continue;
        }
        let usage = session_summary(range.zone, &rows, current, &prices);
        let included: BTreeSet<&str> = rows.iter().map(|r| r.session_id).collect();
        let agent = record.map(|r| r.agent_id.clone()).or_else(|| agent_id.clone()).unwrap_or_else(|| {
            key.strip_prefix("agent:")
                .and_then(|rest| rest.split(':').next())
                .filter(|a| !a.is_empty())
                .map_or_else(|| default_agent.clone(), str::to_owned)
        });
        let label = record
            .and_then(|r| r.label.clone().or_else(|| r.meta.get("label").and_then(|v| v.as_str()).map(str::to_owned)));
        entries.push(SessionUsageEntry {
            key: key.to_owned(),
            label,
            session_id: current.to_owned(),
            scope: if family { UsageScope::Family } else { UsageScope::Instance },
            session_family_key: family.then(|| key.to_owned()),
            current_session_id: family.then(|| current.to_owned()),
            historical_instance_count: family.then_some(included.len()),
            included_session_ids: family.then(|| included.iter().map(|s| (*s).to_owned()).collect()),
            updated_at: record.map_or(usage.last_activity, |r| r.updated_at_ms),
            agent_id: agent,
            creator_key: UNKNOWN_CREATOR_KEY.to_owned(),
            model_override: record.and_then(|r| r.meta.get("model").and_then(|v| v.as_str()).map(str::to_owned)),
            usage: Some(usage),
            has_context_weight: false,
            context_weight: (p.include_context_weight == Some(true)).then_some(None),
        });
    }
    let creator_options =
        if entries.is_empty() { Vec::new() } else { vec![CreatorOption { key: UNKNOWN_CREATOR_KEY.to_owned() }] };
    if p.creator_key.as_deref().is_some_and(|k| k != UNKNOWN_CREATOR_KEY) {
        entries.clear();
    }
    entries.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| a.key.cmp(&b.key)));
    let (totals, aggregates) = aggregate(&entries);
    entries.truncate(limit);
    let mut cache_status = UsageCacheStatus::FRESH;
    if sums.truncated {
        // More rows than one answer reads: the sums cover part of the range.
        cache_status.status = "partial";
    }
    Ok(SessionsUsageResult {
        updated_at: now_ms(),
        start_date: range.start.format("%Y-%m-%d").to_string(),
        end_date: range.end.format("%Y-%m-%d").to_string(),
        sessions: entries,
        totals,
        aggregates,
        creator_options,
        cache_status,
    })
}

/// One session's summary from its (quarter hour, transcript, model) rows.
fn session_summary(zone: Zone, rows: &[&SlotRow<'_>], session_id: &str, prices: &Prices) -> SessionCostSummary {
    let mut totals = CostUsageTotals::default();
    let mut models: BTreeMap<(&str, &str), CostUsageTotals> = BTreeMap::new();
    let mut days: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    let mut day_models: BTreeMap<(String, &str, &str), CostUsageTotals> = BTreeMap::new();
    let mut quarters: BTreeMap<(String, u32), CostUsageTotals> = BTreeMap::new();
    let mut last_activity = 0;
    for row in rows {
        let sum = row.sum;
        let mut one = CostUsageTotals::default();
        add(&mut one, sum, prices);
        let start = row.slot.saturating_mul(QUARTER_HOUR_MS);
        // Every zone's offset is a whole number of quarter hours, so a slot lies in one day.
        let day = zone.day_of(start).format("%Y-%m-%d").to_string();
        let utc_day = Zone::Offset(0).day_of(start).format("%Y-%m-%d").to_string();
        let quarter = u32::try_from(start.rem_euclid(DAY_MS) / QUARTER_HOUR_MS).unwrap_or(0);
        merge(&mut totals, &one);
        merge(models.entry((sum.provider.as_str(), sum.model.as_str())).or_default(), &one);
        merge(day_models.entry((day.clone(), sum.provider.as_str(), sum.model.as_str())).or_default(), &one);
        merge(days.entry(day).or_default(), &one);
        merge(quarters.entry((utc_day, quarter)).or_default(), &one);
        last_activity = last_activity.max(sum.last_ts);
    }
    let mut model_usage: Vec<ModelUsage> = models
        .into_iter()
        .map(|((provider, model), totals)| ModelUsage {
            provider: Some(provider.to_owned()),
            model: Some(model.to_owned()),
            count: totals.turns,
            totals,
        })
        .collect();
    model_usage.sort_by(by_cost_then_tokens);
    SessionCostSummary {
        session_id: session_id.to_owned(),
        last_activity,
        activity_dates: days.keys().cloned().collect(),
        daily_breakdown: days
            .iter()
            .map(|(date, t)| DailyBreakdown {
                date: date.clone(),
                tokens: t.total_tokens,
                cost: t.total_cost,
                totals: t.clone(),
            })
            .collect(),
        daily_message_counts: days
            .iter()
            .map(|(date, t)| DailyMessageCounts { date: date.clone(), counts: MessageCounts::turns(t.turns) })
            .collect(),
        utc_quarter_hour_message_counts: quarters
            .iter()
            .map(|((date, quarter_index), t)| QuarterHourMessages {
                date: date.clone(),
                quarter_index: *quarter_index,
                counts: MessageCounts::turns(t.turns),
            })
            .collect(),
        utc_quarter_hour_token_usage: quarters
            .into_iter()
            .map(|((date, quarter_index), t)| QuarterHourTokens {
                date,
                quarter_index,
                input: t.input,
                output: t.output,
                cache_read: t.cache_read,
                cache_write: t.cache_write,
                total_tokens: t.total_tokens,
                total_cost: t.total_cost,
            })
            .collect(),
        daily_model_usage: day_models
            .into_iter()
            .map(|((date, provider, model), t)| DailyModelUsage {
                date,
                provider: provider.to_owned(),
                model: model.to_owned(),
                tokens: t.total_tokens,
                cost: t.total_cost,
                count: t.turns,
            })
            .collect(),
        message_counts: MessageCounts::turns(totals.turns),
        model_usage,
        totals,
    }
}

fn by_cost_then_tokens(a: &ModelUsage, b: &ModelUsage) -> std::cmp::Ordering {
    b.totals.total_cost.total_cmp(&a.totals.total_cost).then(b.totals.total_tokens.cmp(&a.totals.total_tokens))
}

/// The totals and aggregates of every listed session (upstream's usage aggregate accumulator).
fn aggregate(entries: &[SessionUsageEntry]) -> (CostUsageTotals, UsageAggregates) {
    let mut totals = CostUsageTotals::default();
    let mut messages = MessageCounts::default();
    let mut session_count = 0;
    let mut models: BTreeMap<(String, String), CostUsageTotals> = BTreeMap::new();
    let mut providers: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    let mut cost_daily: BTreeMap<String, CostUsageTotals> = BTreeMap::new();
    let mut model_daily: BTreeMap<(String, String, String), DailyModelUsage> = BTreeMap::new();
    let mut activity: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (entry, usage) in entries.iter().filter_map(|e| e.usage.as_ref().map(|u| (e, u))) {
        merge(&mut totals, &usage.totals);
        messages.add(&usage.message_counts);
        if usage.totals.turns > 0 {
            session_count += 1;
            *activity.entry(usage.activity_dates.clone()).or_default() += 1;
        }
        for m in &usage.model_usage {
            let (provider, model) = (m.provider.clone().unwrap_or_default(), m.model.clone().unwrap_or_default());
            merge(providers.entry(provider.clone()).or_default(), &m.totals);
            merge(models.entry((provider, model)).or_default(), &m.totals);
        }
        merge(by_agent.entry(entry.agent_id.clone()).or_default(), &usage.totals);
        for day in &usage.daily_breakdown {
            merge(cost_daily.entry(day.date.clone()).or_default(), &day.totals);
        }
        for d in &usage.daily_model_usage {
            let row = model_daily
                .entry((d.date.clone(), d.provider.clone(), d.model.clone()))
                .or_insert_with(|| DailyModelUsage { tokens: 0, cost: 0.0, count: 0, ..d.clone() });
            row.tokens += d.tokens;
            row.cost += d.cost;
            row.count += d.count;
        }
    }
    let usage_of = |provider: Option<String>, model: Option<String>, totals: CostUsageTotals| ModelUsage {
        provider,
        model,
        count: totals.turns,
        totals,
    };
    let mut by_model: Vec<ModelUsage> = models.into_iter().map(|((p, m), t)| usage_of(Some(p), Some(m), t)).collect();
    by_model.sort_by(by_cost_then_tokens);
    let mut by_provider: Vec<ModelUsage> = providers.into_iter().map(|(p, t)| usage_of(Some(p), None, t)).collect();
    by_provider.sort_by(by_cost_then_tokens);
    let mut by_agent: Vec<AgentUsage> =
        by_agent.into_iter().map(|(agent_id, totals)| AgentUsage { agent_id, totals }).collect();
    by_agent.sort_by(|a, b| b.totals.total_cost.total_cmp(&a.totals.total_cost));
    let cost_daily: Vec<DatedTotals> =
        cost_daily.into_iter().map(|(date, totals)| DatedTotals { date, totals }).collect();
    let daily = cost_daily
        .iter()
        .map(|d| DailySummary {
            date: d.date.clone(),
            tokens: d.totals.total_tokens,
            cost: d.totals.total_cost,
            messages: d.totals.turns,
            tool_calls: 0,
            errors: 0,
        })
        .collect();
    let by_creator = if session_count == 0 {
        Vec::new()
    } else {
        vec![CreatorUsage {
            key: UNKNOWN_CREATOR_KEY.to_owned(),
            totals: totals.clone(),
            session_count,
            daily: cost_daily.clone(),
            session_activity: activity
                .into_iter()
                .map(|(dates, session_count)| SessionActivity { dates, session_count })
                .collect(),
        }]
    };
    let mut model_daily: Vec<DailyModelUsage> = model_daily.into_values().collect();
    model_daily.sort_by(|a, b| a.date.cmp(&b.date).then(b.cost.total_cmp(&a.cost)));
    let aggregates = UsageAggregates {
        session_count,
        messages,
        tools: ToolsSummary::default(),
        by_model,
        by_provider,
        by_agent,
        by_channel: Vec::new(),
        by_creator,
        cost_daily,
        daily_latency: Vec::new(),
        model_daily,
        daily,
    };
    (totals, aggregates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        parse_date(s).expect("date")
    }

    /// 2026-03-10T12:00:00Z.
    const NOW: i64 = 1_773_144_000_000;

    fn params(v: serde_json::Value) -> UsageCostParams {
        serde_json::from_value(v).expect("params")
    }

    #[test]
    fn dates_are_strict_calendar_days() {
        assert_eq!(parse_date("2026-02-28"), Some(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()));
        for bad in ["2026-02-30", "2026-2-01", "20260201", "2026-13-01", "x", "2026-02-01T00:00"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_offsets_follow_upstreams_grammar_and_bounds() {
        assert_eq!(parse_utc_offset("UTC+2"), Some(120));
        assert_eq!(parse_utc_offset("UTC-05:30"), Some(-330));
        assert_eq!(parse_utc_offset("UTC+14"), Some(840));
        for bad in ["UTC+15", "UTC-13", "UTC+1:5", "GMT+1", "UTC1", "UTC+", "UTC+123"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_default_range_is_the_last_30_days_in_utc() {
        let r = resolve_range(&UsageCostParams::default(), NOW).expect("range");
        assert_eq!((r.start, r.end, r.days()), (date("2026-02-09"), date("2026-03-10"), 30));
        assert_eq!(r.start_ms(), 1_770_595_200_000);
        assert_eq!(r.end_ms(), 1_773_187_200_000 - 1);
        let r = resolve_range(&params(serde_json::json!({"days": "7"})), NOW).expect("range");
        assert_eq!(r.start, date("2026-03-04"));
        let r = resolve_range(&params(serde_json::json!({"range": "1y", "days": 2})), NOW).expect("range");
        assert_eq!(r.days(), 365);
    }

    #[test]
    fn explicit_dates_and_zones_cut_days_where_the_caller_lives() {
        let p = params(serde_json::json!({"startDate": "2026-03-01", "endDate": "2026-03-02",
                                          "mode": "specific", "utcOffset": "UTC+2"}));
        let r = resolve_range(&p, NOW).expect("range");
        assert_eq!(r.start_ms(), 1_772_323_200_000 - 2 * 3_600_000);
        // New York: EST (UTC-5) on 7 March, EDT (UTC-4) from 8 March.
        let p = params(serde_json::json!({"startDate": "2026-03-07", "endDate": "2026-03-08",
                                          "mode": "specific", "timeZone": "America/New_York"}));
        let r = resolve_range(&p, NOW).expect("range");
        assert_eq!(r.start_ms(), 1_772_841_600_000 + 5 * 3_600_000);
        assert_eq!(r.end_ms(), 1_773_014_400_000 + 4 * 3_600_000 - 1);
        assert_eq!(r.zone.day_of(1_772_841_600_000 + 5 * 3_600_000 - 1), date("2026-03-06"));
    }

    #[test]
    fn bad_ranges_are_refused_with_what_is_wrong() {
        let cases = [
            (
                serde_json::json!({"startDate": "2026-02-30", "endDate": "2026-03-01"}),
                "invalid startDate: expected a valid YYYY-MM-DD calendar date",
            ),
            (serde_json::json!({"startDate": "2026-03-01"}), "startDate and endDate must be provided together"),
            (
                serde_json::json!({"startDate": "2026-03-02", "endDate": "2026-03-01"}),
                "startDate must not be after endDate",
            ),
            (
                serde_json::json!({"startDate": "2000-01-01", "endDate": "2026-03-01"}),
                "range too large: 9557 days; at most 3660 days per request",
            ),
            (serde_json::json!({"days": 100000}), "range too large: 100000 days; at most 3660 days per request"),
            (serde_json::json!({"days": "many"}), "invalid days: \"many\" is not a number"),
            (serde_json::json!({"range": "2w"}), "invalid range \"2w\": expected 7d, 30d, 90d, 1y or all"),
            (
                serde_json::json!({"mode": "specific", "timeZone": "Mars/Base"}),
                "invalid timeZone: expected a valid IANA time zone",
            ),
            (
                serde_json::json!({"mode": "specific", "utcOffset": "UTC+99"}),
                "invalid utcOffset: expected UTC-12:00 through UTC+14:00",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(resolve_range(&params(p.clone()), NOW).unwrap_err(), want, "{p}");
        }
        // An unknown zone falls back to a valid offset, as upstream does.
        let p = params(serde_json::json!({"mode": "specific", "timeZone": "Mars/Base", "utcOffset": "UTC-3"}));
        assert_eq!(resolve_range(&p, NOW).expect("range").zone, Zone::Offset(-180));
    }

    fn sum(key: &str, provider: &str, model: &str, turns: i64, tokens: [i64; 4]) -> UsageSum {
        UsageSum {
            key: key.into(),
            provider: provider.into(),
            model: model.into(),
            turns,
            input: tokens[0],
            output: tokens[1],
            cache_read: tokens[2],
            cache_write: tokens[3],
            last_ts: 0,
        }
    }

    #[test]
    fn priced_turns_add_cost_and_unpriced_ones_are_named_not_priced_at_zero() {
        let prices = Prices(BTreeMap::from([(
            "p".to_owned(),
            BTreeMap::from([(
                "m".to_owned(),
                ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 },
            )]),
        )]));
        let mut t = CostUsageTotals::default();
        add(&mut t, &sum("", "p", "m", 2, [1_000_000, 100_000, 10_000, 1_000]), &prices);
        add(&mut t, &sum("", "q", "free?", 3, [500, 50, 0, 0]), &prices);
        assert_eq!((t.input, t.output, t.cache_read, t.cache_write), (1_000_500, 100_050, 10_000, 1_000));
        assert_eq!(t.total_tokens, 1_111_550);
        assert_eq!(t.turns, 5);
        let want = 3.0 + 1.5 + 0.003 + 0.00375;
        assert!((t.total_cost - want).abs() < 1e-12, "{}", t.total_cost);
        assert!((t.output_cost - 1.5).abs() < 1e-12);
        assert_eq!(t.missing_cost_entries, 3);
        assert_eq!(t.missing_cost_by_model, Some(BTreeMap::from([("q/free?".to_owned(), 3)])));
        assert_eq!(
            provider_summary(&t),
            "last 30 days: 1111550 tokens in 5 turns, $4.5068 at configured prices (3 turns unpriced)"
        );
    }

    #[test]
    fn a_named_zone_cuts_days_from_quarter_hours() {
        let zone = Zone::Named("Asia/Kolkata".parse().expect("tz"));
        // 2026-03-01T18:45Z is 2026-03-02T00:15 in India (UTC+5:30).
        let slot = (1_772_323_200_000 + 18 * 3_600_000 + 45 * 60_000) / QUARTER_HOUR_MS;
        assert_eq!(day_key(zone, &sum(&slot.to_string(), "p", "m", 1, [1, 0, 0, 0])), "2026-03-02");
        // 18:15Z is 23:45 on 1 March there.
        assert_eq!(day_key(zone, &sum(&(slot - 2).to_string(), "p", "m", 1, [1, 0, 0, 0])), "2026-03-01");
    }

    fn usage_params(v: serde_json::Value) -> SessionsUsageParams {
        serde_json::from_value(v).expect("params")
    }

    #[test]
    fn sessions_usage_params_are_checked_as_the_schema_says() {
        let bad = [
            (serde_json::json!({"key": ""}), "invalid sessions.usage params: key must not be empty"),
            (serde_json::json!({"agentScope": "some"}), "invalid sessions.usage params: agentScope must be one of all"),
            (
                serde_json::json!({"mode": "local"}),
                "invalid sessions.usage params: mode must be one of utc, gateway, specific",
            ),
            (
                serde_json::json!({"groupBy": "agent"}),
                "invalid sessions.usage params: groupBy must be one of instance, family",
            ),
            (
                serde_json::json!({"utcOffset": "+02:00"}),
                "invalid sessions.usage params: utcOffset must look like UTC+2 or UTC-05:30",
            ),
            (serde_json::json!({"limit": 0}), "invalid sessions.usage params: limit must be at least 1"),
        ];
        for (p, want) in bad {
            assert_eq!(check_sessions_usage_params(&usage_params(p.clone())).unwrap_err(), want, "{p}");
        }
        // What the usage page sends.
        let page = serde_json::json!({"startDate": "2026-03-01", "endDate": "2026-03-30", "agentScope": "all",
            "mode": "specific", "timeZone": "Europe/Berlin", "utcOffset": "UTC+1", "groupBy": "family",
            "limit": 1000, "includeContextWeight": false});
        assert_eq!(check_sessions_usage_params(&usage_params(page)), Ok(()));
        // Closed params: an unknown field does not decode.
        assert!(serde_json::from_value::<SessionsUsageParams>(serde_json::json!({"days": 7})).is_err());
        for (offset, ok) in [("UTC+2", true), ("UTC-05:30", true), ("UTC+99", true), ("UTC+1:5", false), ("UTC", false)]
        {
            assert_eq!(utc_offset_shape(offset), ok, "{offset}");
        }
    }

    #[test]
    fn a_sessions_rows_become_its_days_quarter_hours_and_models() {
        let prices = Prices(BTreeMap::from([(
            "p".to_owned(),
            BTreeMap::from([(
                "m".to_owned(),
                ModelCost { input: 1.0, output: 0.0, cache_read: 0.0, cache_write: 0.0 },
            )]),
        )]));
        // 2026-03-01 23:45Z and 2026-03-02 00:00Z: two UTC days, one day at UTC-1.
        let late = (1_772_323_200_000 + DAY_MS - QUARTER_HOUR_MS) / QUARTER_HOUR_MS;
        let sums = [
            UsageSum {
                key: format!("{late} s1 agent:main:x y"),
                last_ts: 10,
                ..sum("", "p", "m", 2, [1_000_000, 5, 0, 0])
            },
            UsageSum {
                key: format!("{} s1 agent:main:x y", late + 1),
                last_ts: 20,
                ..sum("", "q", "n", 1, [7, 3, 0, 0])
            },
        ];
        let rows: Vec<SlotRow<'_>> = sums.iter().filter_map(slot_row).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].session_id, rows[0].session_key), ("s1", "agent:main:x y"));
        let refs: Vec<&SlotRow<'_>> = rows.iter().collect();
        let utc = session_summary(Zone::Offset(0), &refs, "s1", &prices);
        assert_eq!(utc.activity_dates, ["2026-03-01", "2026-03-02"]);
        assert_eq!(utc.last_activity, 20);
        assert_eq!((utc.totals.turns, utc.totals.input, utc.message_counts.assistant), (3, 1_000_007, 3));
        assert!((utc.totals.total_cost - 1.0).abs() < 1e-12);
        assert_eq!(utc.model_usage.iter().map(|m| m.model.as_deref()).collect::<Vec<_>>(), [Some("m"), Some("n")]);
        let quarters: Vec<_> = utc
            .utc_quarter_hour_token_usage
            .iter()
            .map(|q| (q.date.as_str(), q.quarter_index, q.total_tokens))
            .collect();
        assert_eq!(quarters, [("2026-03-01", 95, 1_000_005), ("2026-03-02", 0, 10)]);
        let west = session_summary(Zone::Offset(-60), &refs, "s1", &prices);
        assert_eq!(west.activity_dates, ["2026-03-01"]);
        assert_eq!(west.daily_breakdown[0].tokens, 1_000_015);
        assert_eq!(west.daily_model_usage.len(), 2);

        let entry = |key: &str, agent: &str, usage: SessionCostSummary| SessionUsageEntry {
            key: key.into(),
            label: None,
            session_id: usage.session_id.clone(),
            scope: UsageScope::Instance,
            session_family_key: None,
            current_session_id: None,
            included_session_ids: None,
            historical_instance_count: None,
            updated_at: 0,
            agent_id: agent.into(),
            creator_key: UNKNOWN_CREATOR_KEY.into(),
            model_override: None,
            usage: Some(usage),
            has_context_weight: false,
            context_weight: None,
        };
        let (totals, agg) = aggregate(&[entry("a", "main", utc.clone()), entry("b", "ops", utc)]);
        assert_eq!((totals.turns, agg.session_count, agg.messages.total), (6, 2, 6));
        assert_eq!(agg.by_agent.len(), 2);
        assert_eq!(agg.by_provider.iter().map(|p| p.totals.turns).collect::<Vec<_>>(), [4, 2]);
        assert_eq!(agg.daily.iter().map(|d| d.messages).collect::<Vec<_>>(), [4, 2]);
        assert_eq!(agg.by_creator[0].session_activity[0].session_count, 2);
    }
}
