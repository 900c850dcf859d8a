//! `usage.cost` and `usage.status`: params and results.
//!
//! Upstream has no schema definition for either; the shapes follow what the real gateway
//! returns and its clients read (openclaw 2026.9.6: `gateway usage-cost` in the CLI, the Control
//! UI's usage and models pages): a `CostUsageSummary` (`daily` + `totals` of
//! `CostUsageTotals`) and a `ProviderUsageSummary` (`providers` of snapshots).
//!
//! clawgate extensions, ignored by upstream's clients: `startDate`/`endDate` of the range,
//! `turns` in every totals entry, `groupBy` with its `groups`, and `truncated`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `days` as upstream reads it: a number or a numeric string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DaysParam {
    /// `days: 7`.
    Number(f64),
    /// `days: "7"`.
    Text(String),
}

/// `usage.cost {startDate?, endDate?, days?, range?, mode?, utcOffset?, timeZone?, agentId?,
/// agentScope?, groupBy?}`. Unknown fields are ignored, as upstream (which has no schema for
/// these params) does. The handler checks the values, with upstream's messages.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCostParams {
    /// First day, `YYYY-MM-DD` (with `endDate`).
    #[serde(default)]
    pub start_date: Option<String>,
    /// Last day, `YYYY-MM-DD` (with `startDate`).
    #[serde(default)]
    pub end_date: Option<String>,
    /// The last N days, today included (default 30).
    #[serde(default)]
    pub days: Option<DaysParam>,
    /// `7d`, `30d`, `90d`, `1y` or `all`.
    #[serde(default)]
    pub range: Option<String>,
    /// How days are cut: `utc` (default), `gateway` (the gateway host's zone) or `specific`
    /// (with `utcOffset`).
    #[serde(default)]
    pub mode: Option<String>,
    /// `UTC+H[:MM]`/`UTC-H[:MM]` for `mode: "specific"`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// An IANA zone for `mode: "specific"`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// One agent (default: the default agent).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `all`: every agent.
    #[serde(default)]
    pub agent_scope: Option<String>,
    /// clawgate: also break the range down by `agent`, `model`, `provider` or `session`.
    #[serde(default)]
    pub group_by: Option<String>,
}

/// Token and cost sums (upstream `CostUsageTotals`). Costs are USD from the configured prices
/// (`models.providers.*.models[].cost`); turns of a model without a price add their tokens but
/// no cost, and are counted in `missingCostEntries` and `missingCostByModel` instead.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostUsageTotals {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// All four above.
    pub total_tokens: u64,
    /// USD of the priced turns.
    pub total_cost: f64,
    /// USD of their input tokens.
    pub input_cost: f64,
    /// USD of their output tokens.
    pub output_cost: f64,
    /// USD of their cache reads.
    pub cache_read_cost: f64,
    /// USD of their cache writes.
    pub cache_write_cost: f64,
    /// Turns whose model has no price (their cost is not in `totalCost`).
    pub missing_cost_entries: u64,
    /// Those turns by `provider/model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_cost_by_model: Option<BTreeMap<String, u64>>,
    /// clawgate: how many turns the sums are of.
    pub turns: u64,
}

/// One day of a [`UsageCostResult`] (upstream `CostUsageDailyEntry`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostUsageDaily {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Its sums.
    #[serde(flatten)]
    pub totals: CostUsageTotals,
}

/// One entry of [`UsageCostResult::groups`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostUsageGroup {
    /// The agent id, `provider/model`, provider id or session key.
    pub key: String,
    /// Its sums.
    #[serde(flatten)]
    pub totals: CostUsageTotals,
    /// USD of all its turns; `null` when none of them has a price (never a made-up 0).
    pub cost: Option<f64>,
}

/// Whether the sums are complete (upstream's `cacheStatus`; clawgate reads its own store, so
/// always `fresh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCacheStatus {
    /// `fresh`.
    pub status: &'static str,
    /// Always 0 (no transcript files are cached).
    pub cached_files: u64,
    /// Always 0.
    pub pending_files: u64,
    /// Always 0.
    pub stale_files: u64,
}

impl UsageCacheStatus {
    /// The status of sums read from the store.
    pub const FRESH: UsageCacheStatus =
        UsageCacheStatus { status: "fresh", cached_files: 0, pending_files: 0, stale_files: 0 };
}

/// `usage.cost` → upstream's `CostUsageSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCostResult {
    /// When it was computed (ms).
    pub updated_at: i64,
    /// Calendar days in the range.
    pub days: u32,
    /// clawgate: the first day of the range.
    pub start_date: String,
    /// clawgate: the last day of the range.
    pub end_date: String,
    /// Every day of the range, oldest first (days without turns are zero).
    pub daily: Vec<CostUsageDaily>,
    /// The whole range.
    pub totals: CostUsageTotals,
    /// Always fresh.
    pub cache_status: UsageCacheStatus,
    /// clawgate: `groupBy` as asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// clawgate: the breakdown by `groupBy`, largest cost first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<CostUsageGroup>>,
    /// clawgate: the range held more (day, group, model) sums than one answer carries; the
    /// sums above cover only part of it. Ask for a shorter range.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One provider in `usage.status` (upstream `ProviderUsageSnapshot`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderUsageSnapshot {
    /// The provider id.
    pub provider: String,
    /// Its name for display.
    pub display_name: String,
    /// Quota windows the provider reports; clawgate reads none (always empty).
    pub windows: Vec<serde_json::Value>,
    /// What clawgate recorded of this provider's use (tokens, cost at the configured prices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// `usage.status` → upstream's `ProviderUsageSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageStatusResult {
    /// When it was computed (ms).
    pub updated_at: i64,
    /// One per configured provider.
    pub providers: Vec<ProviderUsageSnapshot>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cost_params_read_upstream_forms_and_ignore_unknown_fields() {
        let p: UsageCostParams =
            serde_json::from_value(json!({"days": "7", "agentScope": "all", "extra": 1})).expect("params");
        assert_eq!(p.days, Some(DaysParam::Text("7".into())));
        assert_eq!(p.agent_scope.as_deref(), Some("all"));
        let p: UsageCostParams = serde_json::from_value(json!({"days": 30, "agentId": "ops"})).expect("params");
        assert_eq!(p.days, Some(DaysParam::Number(30.0)));
    }

    #[test]
    fn totals_have_upstreams_field_names_and_a_group_may_have_no_cost() {
        let group = CostUsageGroup {
            key: "p/m".into(),
            totals: CostUsageTotals {
                input: 1,
                total_tokens: 1,
                missing_cost_entries: 1,
                missing_cost_by_model: Some(BTreeMap::from([("p/m".into(), 1)])),
                turns: 1,
                ..CostUsageTotals::default()
            },
            cost: None,
        };
        let v = serde_json::to_value(&group).expect("json");
        for key in [
            "input",
            "output",
            "cacheRead",
            "cacheWrite",
            "totalTokens",
            "totalCost",
            "inputCost",
            "outputCost",
            "cacheReadCost",
            "cacheWriteCost",
            "missingCostEntries",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        assert_eq!(v["cost"], serde_json::Value::Null);
        assert_eq!(v["missingCostByModel"]["p/m"], 1);
    }
}
