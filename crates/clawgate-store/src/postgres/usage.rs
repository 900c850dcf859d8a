//! [`UsageStore`] on the `turn_usage` table (filled by a trigger on `transcript_entries`, see
//! migration 0005).

use super::PgStore;
use crate::usage::{DayZone, TurnUsage, UsageGrouping, UsageQuery, UsageStore, UsageSums};
use crate::{Result, UsageSum};

/// The SQL expression of a row's grouping key. `?5` is the day offset in seconds (bound for
/// every query; unused by the groupings that ignore it).
fn key_expr(grouping: UsageGrouping) -> &'static str {
    match grouping {
        UsageGrouping::Total => "''",
        UsageGrouping::Day(DayZone::Offset(_)) => {
            "to_char(to_timestamp(ts / 1000 + $5) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        UsageGrouping::Day(DayZone::Local) => "to_char(to_timestamp(ts / 1000), 'YYYY-MM-DD')",
        UsageGrouping::Agent => "agent_id",
        UsageGrouping::Session => "session_key",
        UsageGrouping::QuarterHour => "CAST(ts / 900000 AS TEXT)",
        UsageGrouping::SessionQuarterHour => "CAST(ts / 900000 AS TEXT) || ' ' || session_id || ' ' || session_key",
    }
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl UsageStore for PgStore {
    async fn usage_sums(&self, query: &UsageQuery) -> Result<UsageSums> {
        let offset_s = match query.grouping {
            UsageGrouping::Day(DayZone::Offset(minutes)) => i64::from(minutes) * 60,
            _ => 0,
        };
        // `?3`/`?4` NULL means "any": one statement shape for every filter combination.
        let sql = format!(
            "SELECT {key} AS key, provider, model, count(*) AS turns, \
                    sum(input)::BIGINT AS input, sum(output)::BIGINT AS output, \
                    sum(cache_read)::BIGINT AS cache_read, sum(cache_write)::BIGINT AS cache_write, max(ts) AS last_ts \
               FROM turn_usage \
              WHERE ts BETWEEN $1 AND $2 \
                AND ($3 IS NULL OR agent_id = $3) \
                AND ($4 IS NULL OR session_key = $4) \
              GROUP BY 1, provider, model \
              ORDER BY 1, provider, model \
              LIMIT $6",
            key = key_expr(query.grouping)
        );
        let mut rows = sqlx::query_as::<_, UsageSum>(&sql)
            .bind(query.start_ms)
            .bind(query.end_ms)
            .bind(query.agent_id.as_deref())
            .bind(query.session_key.as_deref())
            .bind(offset_s)
            .bind(sql_limit(query.limit).saturating_add(1))
            .fetch_all(self.pool())
            .await?;
        let truncated = rows.len() > query.limit;
        rows.truncate(query.limit);
        Ok(UsageSums { rows, truncated })
    }

    async fn turn_usage(&self, start_ms: i64, end_ms: i64, limit: usize) -> Result<Vec<TurnUsage>> {
        let rows = sqlx::query_as::<_, TurnUsage>(
            "SELECT ts, agent_id, session_key, session_id, run_id, provider, model, \
                    input, output, cache_read, cache_write \
               FROM turn_usage WHERE ts BETWEEN $1 AND $2 ORDER BY ts, id LIMIT $3",
        )
        .bind(start_ms)
        .bind(end_ms)
        .bind(sql_limit(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }
}
