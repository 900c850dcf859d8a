//! `usage.cost` and `usage.status`: the token usage recorded with every assistant turn
//! (`clawgate_store::UsageStore`), summed by the store and priced here with the prices in the
//! config in force (`models.providers.*.models[].cost`, USD per million tokens).
//!
//! A model without a price is never priced at 0: its turns add tokens, no cost, and are named
//! in `missingCostEntries`/`missingCostByModel` (and a group made only of them has `cost: null`).

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Local, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use clawgate_config::{Config, ModelCost};
use clawgate_protocol::methods::AnyParams;
use clawgate_protocol::methods::usage::{
    CostUsageDaily, CostUsageGroup, CostUsageTotals, DaysParam, ProviderUsageSnapshot, UsageCacheStatus,
    UsageCostParams, UsageCostResult, UsageStatusResult,
};
use clawgate_store::{DayZone, UsageGrouping, UsageQuery, UsageStore, UsageSum};

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
}
