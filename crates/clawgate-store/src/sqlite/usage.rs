//! [`UsageStore`] on the `turn_usage` table (filled by a trigger on `transcript_entries`, see
//! migration 0005).

use super::SqliteStore;
use crate::usage::{DayZone, TurnUsage, UsageGrouping, UsageQuery, UsageStore, UsageSums};
use crate::{Result, UsageSum};

/// The SQL expression of a row's grouping key. `?5` is the day offset in seconds (bound for
/// every query; unused by the groupings that ignore it).
fn key_expr(grouping: UsageGrouping) -> &'static str {
    match grouping {
        UsageGrouping::Total => "''",
        UsageGrouping::Day(DayZone::Offset(_)) => "strftime('%Y-%m-%d', ts / 1000 + ?5, 'unixepoch')",
        UsageGrouping::Day(DayZone::Local) => "strftime('%Y-%m-%d', ts / 1000, 'unixepoch', 'localtime')",
        UsageGrouping::Agent => "agent_id",
        UsageGrouping::Session => "session_key",
        UsageGrouping::QuarterHour => "CAST(ts / 900000 AS TEXT)",
        UsageGrouping::SessionQuarterHour => "CAST(ts / 900000 AS TEXT) || ' ' || session_id || ' ' || session_key",
    }
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl UsageStore for SqliteStore {
    async fn usage_sums(&self, query: &UsageQuery) -> Result<UsageSums> {
        let offset_s = match query.grouping {
            UsageGrouping::Day(DayZone::Offset(minutes)) => i64::from(minutes) * 60,
            _ => 0,
        };
        // `?3`/`?4` NULL means "any": one statement shape for every filter combination.
        let sql = format!(
            "SELECT {key} AS key, provider, model, count(*) AS turns, \
                    sum(input) AS input, sum(output) AS output, \
                    sum(cache_read) AS cache_read, sum(cache_write) AS cache_write, max(ts) AS last_ts \
               FROM turn_usage \
              WHERE ts BETWEEN ?1 AND ?2 \
                AND (?3 IS NULL OR agent_id = ?3) \
                AND (?4 IS NULL OR session_key = ?4) \
              GROUP BY 1, provider, model \
              ORDER BY 1, provider, model \
              LIMIT ?6",
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
               FROM turn_usage WHERE ts BETWEEN ?1 AND ?2 ORDER BY ts, id LIMIT ?3",
        )
        .bind(start_ms)
        .bind(end_ms)
        .bind(sql_limit(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{Value, json};

    use super::*;
    use crate::{EntryStatus, SessionStore, TranscriptRole, TranscriptStore};

    const DAY: i64 = 86_400_000;
    /// 2026-03-01T00:00:00Z.
    const MAR1: i64 = 1_772_323_200_000;

    fn assistant(provider: &str, model: &str, input: i64, output: i64, cache_read: i64, cache_write: i64) -> Value {
        json!({
            "role": "assistant", "content": [{"type": "text", "text": "ok"}],
            "provider": provider, "model": model,
            "usage": {"input": input, "output": output, "cacheRead": cache_read, "cacheWrite": cache_write,
                      "totalTokens": input + output},
        })
    }

    async fn session(store: &SqliteStore, key: &str, agent: &str) -> String {
        store.ensure_session(key, agent, 1).await.expect("session").session_id
    }

    async fn append(store: &SqliteStore, sid: &str, content: &Value, ts: i64) {
        store.append(sid, TranscriptRole::Assistant, content, Some("r"), EntryStatus::Final, ts).await.expect("append");
    }

    fn all(grouping: UsageGrouping) -> UsageQuery {
        UsageQuery { start_ms: 0, end_ms: i64::MAX, agent_id: None, session_key: None, grouping, limit: 100 }
    }

    #[tokio::test]
    async fn an_assistant_entry_with_usage_records_one_turn_in_its_append() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let sid = session(&store, "agent:main:main", "main").await;
        append(&store, &sid, &assistant("p", "m", 10, 5, 3, 2), MAR1 + 5).await;
        // Not counted: a user entry, an assistant entry without usage, a non-object usage.
        store
            .append(
                &sid,
                TranscriptRole::User,
                &json!({"role": "user", "usage": {"input": 9}}),
                None,
                EntryStatus::Final,
                MAR1,
            )
            .await
            .expect("user");
        append(&store, &sid, &json!({"role": "assistant", "content": "partial"}), MAR1).await;
        append(&store, &sid, &json!({"role": "assistant", "usage": 7}), MAR1).await;

        let turns = store.turn_usage(0, i64::MAX, 10).await.expect("turns");
        assert_eq!(
            turns,
            vec![TurnUsage {
                ts: MAR1 + 5,
                agent_id: "main".into(),
                session_key: "agent:main:main".into(),
                session_id: sid,
                run_id: Some("r".into()),
                provider: "p".into(),
                model: "m".into(),
                input: 10,
                output: 5,
                cache_read: 3,
                cache_write: 2,
            }]
        );
    }

    #[tokio::test]
    async fn odd_usage_values_never_fail_the_append() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let sid = session(&store, "agent:main:main", "main").await;
        let odd = json!({"role": "assistant", "provider": 5, "usage": {"input": 2.9, "output": -4, "cacheRead": "x"}});
        append(&store, &sid, &odd, MAR1).await;
        let turns = store.turn_usage(0, i64::MAX, 10).await.expect("turns");
        assert_eq!(turns.len(), 1);
        let t = &turns[0];
        assert_eq!((t.input, t.output, t.cache_read, t.cache_write), (2, 0, 0, 0));
        assert_eq!((t.provider.as_str(), t.model.as_str()), ("5", "unknown"));
    }

    #[tokio::test]
    async fn sums_group_by_day_agent_and_session_within_the_range() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let a = session(&store, "agent:main:main", "main").await;
        let b = session(&store, "agent:ops:main", "ops").await;
        append(&store, &a, &assistant("p", "m1", 100, 10, 0, 0), MAR1 + 1_000).await;
        append(&store, &a, &assistant("p", "m1", 200, 20, 5, 0), MAR1 + 2_000).await;
        append(&store, &a, &assistant("q", "m2", 1, 1, 0, 0), MAR1 + DAY + 1).await;
        append(&store, &b, &assistant("p", "m1", 7, 3, 0, 1), MAR1 + DAY + 2).await;
        // Outside the range below.
        append(&store, &b, &assistant("p", "m1", 1_000, 1_000, 0, 0), MAR1 + 5 * DAY).await;

        let range = |grouping| UsageQuery { start_ms: MAR1, end_ms: MAR1 + 2 * DAY - 1, ..all(grouping) };
        let by_day = store.usage_sums(&range(UsageGrouping::Day(DayZone::Offset(0)))).await.expect("days");
        let got: Vec<_> = by_day
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.provider.as_str(), r.model.as_str(), r.turns, r.input))
            .collect();
        assert_eq!(
            got,
            vec![("2026-03-01", "p", "m1", 2, 300), ("2026-03-02", "p", "m1", 1, 7), ("2026-03-02", "q", "m2", 1, 1)]
        );
        assert!(!by_day.truncated);
        let first = &by_day.rows[0];
        assert_eq!((first.output, first.cache_read, first.cache_write, first.last_ts), (30, 5, 0, MAR1 + 2_000));

        let by_agent = store.usage_sums(&range(UsageGrouping::Agent)).await.expect("agents");
        let got: Vec<_> = by_agent.rows.iter().map(|r| (r.key.as_str(), r.model.as_str(), r.output)).collect();
        assert_eq!(got, vec![("main", "m1", 30), ("main", "m2", 1), ("ops", "m1", 3)]);

        let one_agent = UsageQuery { agent_id: Some("ops".into()), ..all(UsageGrouping::Session) };
        let got = store.usage_sums(&one_agent).await.expect("ops");
        assert_eq!(got.rows.len(), 1);
        assert_eq!((got.rows[0].key.as_str(), got.rows[0].turns, got.rows[0].input), ("agent:ops:main", 2, 1_007));

        let one_session = UsageQuery { session_key: Some("agent:main:main".into()), ..all(UsageGrouping::Total) };
        let got = store.usage_sums(&one_session).await.expect("session");
        assert_eq!(got.rows.iter().map(|r| r.turns).sum::<i64>(), 3);
    }

    #[tokio::test]
    async fn a_day_is_cut_in_the_requested_offset() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let a = session(&store, "agent:main:main", "main").await;
        // 23:30 UTC on 1 March is 1 March in UTC but 2 March at UTC+1.
        append(&store, &a, &assistant("p", "m", 1, 1, 0, 0), MAR1 + DAY - 30 * 60_000).await;
        let utc = store.usage_sums(&all(UsageGrouping::Day(DayZone::Offset(0)))).await.expect("utc");
        let plus1 = store.usage_sums(&all(UsageGrouping::Day(DayZone::Offset(60)))).await.expect("+1");
        let minus1 = store.usage_sums(&all(UsageGrouping::Day(DayZone::Offset(-60)))).await.expect("-1");
        assert_eq!(utc.rows[0].key, "2026-03-01");
        assert_eq!(plus1.rows[0].key, "2026-03-02");
        assert_eq!(minus1.rows[0].key, "2026-03-01");
        let slots = store.usage_sums(&all(UsageGrouping::QuarterHour)).await.expect("slots");
        assert_eq!(slots.rows[0].key, ((MAR1 + DAY - 30 * 60_000) / 900_000).to_string());
    }

    #[tokio::test]
    async fn sums_are_bounded_by_the_limit_and_say_so() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        for i in 0..5 {
            let sid = session(&store, &format!("agent:main:s{i}"), "main").await;
            append(&store, &sid, &assistant("p", "m", 1, 1, 0, 0), MAR1 + i).await;
        }
        let q = UsageQuery { limit: 3, ..all(UsageGrouping::Session) };
        let got = store.usage_sums(&q).await.expect("sums");
        assert_eq!(got.rows.len(), 3);
        assert!(got.truncated);
        let q = UsageQuery { limit: 5, ..all(UsageGrouping::Session) };
        assert!(!store.usage_sums(&q).await.expect("sums").truncated);
    }

    #[tokio::test]
    async fn usage_outlives_compaction_and_deleted_transcripts() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let sid = session(&store, "agent:main:main", "main").await;
        for i in 0..4 {
            append(&store, &sid, &assistant("p", "m", 10, 1, 0, 0), MAR1 + i).await;
        }
        store.compact(&sid, 1).await.expect("compact");
        let got = store.usage_sums(&all(UsageGrouping::Total)).await.expect("sums");
        assert_eq!((got.rows[0].turns, got.rows[0].input), (4, 40));
    }

    /// The migration counts the usage of transcripts written before it existed.
    #[tokio::test]
    async fn the_migration_backfills_usage_already_in_transcripts() {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.db");
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("pool");
        // The schema as it was before this migration.
        let before: Vec<_> = super::super::MIGRATOR.iter().filter(|m| m.version < 5).cloned().collect();
        let old = sqlx::migrate::Migrator { migrations: Cow::Owned(before), ..sqlx::migrate::Migrator::DEFAULT };
        old.run(&pool).await.expect("old schema");
        sqlx::query("INSERT INTO sessions VALUES ('agent:ops:main', 'ops', 's1', NULL, '{}', 1, 1)")
            .execute(&pool)
            .await
            .expect("session");
        sqlx::query("INSERT INTO transcript_heads VALUES ('s1', 'agent:ops:main', 3, 3, 3)")
            .execute(&pool)
            .await
            .expect("head");
        let rows = [
            (1, "user", json!({"role": "user", "content": "hi"})),
            (2, "assistant", assistant("p", "m", 11, 4, 2, 1)),
            (3, "assistant", json!({"role": "assistant", "content": "no usage"})),
        ];
        for (seq, role, content) in rows {
            sqlx::query(
                "INSERT INTO transcript_entries (session_id, seq, role, content, run_id, status, created_at_ms) \
                 VALUES ('s1', ?, ?, ?, 'r1', 'final', ?)",
            )
            .bind(seq)
            .bind(role)
            .bind(content.to_string())
            .bind(MAR1 + seq)
            .execute(&pool)
            .await
            .expect("entry");
        }
        pool.close().await;

        let store = SqliteStore::open(&path).await.expect("migrated");
        let turns = store.turn_usage(0, i64::MAX, 10).await.expect("turns");
        assert_eq!(turns.len(), 1);
        let t = &turns[0];
        assert_eq!((t.agent_id.as_str(), t.session_key.as_str(), t.ts), ("ops", "agent:ops:main", MAR1 + 2));
        assert_eq!((t.input, t.output, t.cache_read, t.cache_write), (11, 4, 2, 1));
        store.close().await.expect("close");
    }
}
