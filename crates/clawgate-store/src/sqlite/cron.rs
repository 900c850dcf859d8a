//! [`CronStore`] on the `cron_jobs` and `cron_runs` tables: scheduled jobs and one receipt per
//! fired slot.

use super::SqliteStore;
use crate::cron_model::{CRON_CATCH_UP, CRON_FINISHED_STATUSES, CRON_SCHEDULE_KINDS};
use crate::{CronJob, CronRunRecord, CronStore, Result, StoreError};

const CRON_COLUMNS: &str = "id, name, schedule_kind, schedule, anchor_ms, timezone, enabled, kind, payload, \
     deliver_to, catch_up, delete_after_run, created_at_ms, updated_at_ms, last_run_at_ms, last_status, next_run_at_ms";

const CRON_RUN_COLUMNS: &str = "job_id, slot_ms, run_id, status, summary, error, started_at_ms, finished_at_ms";

impl CronStore for SqliteStore {
    async fn upsert_cron_job(&self, job: &CronJob) -> Result<()> {
        if !CRON_CATCH_UP.contains(&job.catch_up.as_str()) {
            return Err(StoreError::Conflict(format!("unknown cron catch_up {:?}", job.catch_up)));
        }
        if !CRON_SCHEDULE_KINDS.contains(&job.schedule_kind.as_str()) {
            return Err(StoreError::Conflict(format!("unknown cron schedule kind {:?}", job.schedule_kind)));
        }
        sqlx::query(
            "INSERT INTO cron_jobs (id, name, schedule, timezone, enabled, kind, payload, deliver_to, catch_up, \
             created_at_ms, updated_at_ms, last_run_at_ms, last_status, next_run_at_ms, schedule_kind, anchor_ms, \
             delete_after_run) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, schedule = excluded.schedule, \
             timezone = excluded.timezone, enabled = excluded.enabled, kind = excluded.kind, \
             payload = excluded.payload, deliver_to = excluded.deliver_to, catch_up = excluded.catch_up, \
             updated_at_ms = excluded.updated_at_ms, next_run_at_ms = excluded.next_run_at_ms, \
             schedule_kind = excluded.schedule_kind, anchor_ms = excluded.anchor_ms, \
             delete_after_run = excluded.delete_after_run",
        )
        .bind(&job.id)
        .bind(&job.name)
        .bind(&job.schedule)
        .bind(job.timezone.as_deref())
        .bind(job.enabled)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(&job.deliver_to)
        .bind(&job.catch_up)
        .bind(job.created_at_ms)
        .bind(job.updated_at_ms)
        .bind(job.last_run_at_ms)
        .bind(job.last_status.as_deref())
        .bind(job.next_run_at_ms)
        .bind(&job.schedule_kind)
        .bind(job.anchor_ms)
        .bind(job.delete_after_run)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_cron_job(&self, id: &str) -> Result<Option<CronJob>> {
        sqlx::query_as::<_, CronJob>(&format!("SELECT {CRON_COLUMNS} FROM cron_jobs WHERE id = ?1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from)
    }

    async fn list_cron_jobs(&self, include_disabled: bool) -> Result<Vec<CronJob>> {
        sqlx::query_as::<_, CronJob>(&format!(
            "SELECT {CRON_COLUMNS} FROM cron_jobs WHERE ?1 OR enabled = 1 ORDER BY name, id"
        ))
        .bind(include_disabled)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn remove_cron_job(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM cron_runs WHERE job_id = ?1").bind(id).execute(&mut *tx).await?;
        let removed = sqlx::query("DELETE FROM cron_jobs WHERE id = ?1").bind(id).execute(&mut *tx).await?;
        self.commit(tx).await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn set_cron_enabled(&self, id: &str, enabled: bool, now_ms: i64) -> Result<bool> {
        let updated = sqlx::query("UPDATE cron_jobs SET enabled = ?2, updated_at_ms = ?3 WHERE id = ?1")
            .bind(id)
            .bind(enabled)
            .bind(now_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn set_cron_next_run(&self, id: &str, next_run_at_ms: Option<i64>, now_ms: i64) -> Result<bool> {
        let updated = sqlx::query("UPDATE cron_jobs SET next_run_at_ms = ?2, updated_at_ms = ?3 WHERE id = ?1")
            .bind(id)
            .bind(next_run_at_ms)
            .bind(now_ms)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn claim_cron_slot(&self, job_id: &str, slot_ms: i64, run_id: &str, now_ms: i64) -> Result<bool> {
        // The receipt's primary key decides the winner; the job's run state changes with it.
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO cron_runs (job_id, slot_ms, run_id, status, started_at_ms) \
             SELECT ?1, ?2, ?3, 'running', ?4 WHERE EXISTS (SELECT 1 FROM cron_jobs WHERE id = ?1) \
             ON CONFLICT (job_id, slot_ms) DO NOTHING",
        )
        .bind(job_id)
        .bind(slot_ms)
        .bind(run_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let job = sqlx::query(
            "UPDATE cron_jobs SET last_run_at_ms = CASE WHEN ?2 THEN ?3 ELSE last_run_at_ms END, \
             last_status = CASE WHEN ?2 THEN 'running' ELSE last_status END WHERE id = ?1",
        )
        .bind(job_id)
        .bind(inserted == 1)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if job == 0 {
            return Err(StoreError::NotFound);
        }
        self.commit(tx).await?;
        Ok(inserted == 1)
    }

    async fn finish_cron_run(
        &self,
        job_id: &str,
        slot_ms: i64,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        if !CRON_FINISHED_STATUSES.contains(&status) {
            return Err(StoreError::Conflict(format!("a cron run cannot finish as {status:?}")));
        }
        let mut tx = self.begin_write().await?;
        let finished = sqlx::query(
            "UPDATE cron_runs SET status = ?3, summary = ?4, error = ?5, finished_at_ms = ?6 \
             WHERE job_id = ?1 AND slot_ms = ?2 AND status = 'running'",
        )
        .bind(job_id)
        .bind(slot_ms)
        .bind(status)
        .bind(summary)
        .bind(error)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if finished == 0 {
            let current: Option<String> =
                sqlx::query_scalar("SELECT status FROM cron_runs WHERE job_id = ?1 AND slot_ms = ?2")
                    .bind(job_id)
                    .bind(slot_ms)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match current {
                None => StoreError::NotFound,
                Some(current) => {
                    StoreError::Conflict(format!("cron run {job_id}@{slot_ms} already finished as {current}"))
                }
            });
        }
        // A late finish of an older slot must not overwrite the status of a newer one.
        sqlx::query(
            "UPDATE cron_jobs SET last_status = ?3 WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM cron_runs WHERE job_id = ?1 AND slot_ms > ?2)",
        )
        .bind(job_id)
        .bind(slot_ms)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn list_cron_runs(&self, job_id: Option<&str>, limit: u32) -> Result<Vec<CronRunRecord>> {
        sqlx::query_as::<_, CronRunRecord>(&format!(
            "SELECT {CRON_RUN_COLUMNS} FROM cron_runs WHERE ?1 IS NULL OR job_id = ?1 \
             ORDER BY started_at_ms DESC, slot_ms DESC, job_id LIMIT ?2"
        ))
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn last_cron_slot(&self, job_id: &str) -> Result<Option<i64>> {
        let slot = sqlx::query_scalar("SELECT MAX(slot_ms) FROM cron_runs WHERE job_id = ?1")
            .bind(job_id)
            .fetch_one(self.pool())
            .await?;
        Ok(slot)
    }

    async fn prune_cron_runs(&self, older_than_ms: i64) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM cron_runs WHERE status <> 'running' AND started_at_ms < ?1 \
             AND slot_ms < (SELECT MAX(r.slot_ms) FROM cron_runs AS r WHERE r.job_id = cron_runs.job_id)",
        )
        .bind(older_than_ms)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schema_refuses_unknown_catch_up() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        let bad_cron = sqlx::query(
            "INSERT INTO cron_jobs (id, name, schedule, enabled, kind, payload, catch_up, created_at_ms, \
             updated_at_ms) VALUES ('c', 'n', '* * * * *', 1, 'agentTurn', '{}', 'sometimes', 1, 1)",
        )
        .execute(store.pool())
        .await;
        assert!(bad_cron.is_err());
    }
}
