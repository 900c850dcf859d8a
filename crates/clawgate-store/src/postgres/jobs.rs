//! [`JobStore`] on the `comfy_jobs` and `comfy_job_deliveries` tables.
//!
//! Every job transition is one conditional UPDATE whose WHERE clause names the statuses it may
//! start from, so two racing transitions cannot both apply; when it matches nothing, the row is
//! read again only to tell "unknown" from "wrong status".

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgConnection;

use super::{PgStore, count};
use crate::{JobQuery, JobRecord, JobStatus, JobStore, NewJob, Result, StoreError};

const JOB_COLUMNS: &str = "seq, id, template_id, inputs, workflow, status, worker, prompt_id, attempts, \
     max_attempts, error, outputs, deliver_to, requested_by, approval_id, progress, created_at_ms, updated_at_ms, \
     started_at_ms, ended_at_ms";

/// Reads one job's status on `conn`, to explain why a conditional update matched nothing.
async fn job_status(conn: &mut PgConnection, id: &str) -> Result<Option<JobStatus>> {
    Ok(sqlx::query_scalar("SELECT status FROM comfy_jobs WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?)
}

/// Reads one job on `conn` (so it can take part in a transaction).
async fn fetch_job(conn: &mut PgConnection, id: &str) -> Result<Option<JobRecord>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM comfy_jobs WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&mut *conn).await?)
}

/// The outcome of a guarded transition: the updated row, or why there was none — the job is
/// unknown, or its status does not allow `what`.
async fn transitioned(conn: &mut PgConnection, id: &str, row: Option<JobRecord>, what: &str) -> Result<JobRecord> {
    if let Some(row) = row {
        return Ok(row);
    }
    match job_status(conn, id).await? {
        None => Err(StoreError::NotFound),
        Some(status) => Err(StoreError::Conflict(format!("job {id} is {status}, cannot {what} it"))),
    }
}

/// Runs a guarded job UPDATE (`sql` must end in `RETURNING {JOB_COLUMNS}`, with the id as
/// `?1`) whose remaining parameters are bound by `bind`.
macro_rules! guarded_update {
    ($store:expr, $id:expr, $what:expr, $sql:expr, |$q:ident| $bind:expr) => {{
        let mut conn = $store.pool().acquire().await?;
        let sql = $sql;
        let $q = sqlx::query_as::<_, JobRecord>(&sql).bind($id);
        let row = $bind.fetch_optional(&mut *conn).await?;
        transitioned(&mut conn, $id, row, $what).await
    }};
}

/// Inserts a job row as `status`, on `placement` (worker, prompt) when it already runs (then
/// `started_at_ms = now_ms`). The unique index on id decides: a taken id inserts (and returns)
/// nothing, which is a [`StoreError::Conflict`].
async fn insert_job_row(
    store: &PgStore,
    job: &NewJob,
    status: JobStatus,
    placement: Option<(&str, &str)>,
    attempts: i64,
    max_attempts: i64,
    now_ms: i64,
) -> Result<JobRecord> {
    let row = sqlx::query_as::<_, JobRecord>(&format!(
        "INSERT INTO comfy_jobs (id, template_id, inputs, workflow, status, worker, prompt_id, attempts, \
         max_attempts, outputs, deliver_to, requested_by, approval_id, created_at_ms, updated_at_ms, \
         started_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '[]', $10, $11, $12, $13, $13, $14) \
         ON CONFLICT (id) DO NOTHING RETURNING {JOB_COLUMNS}"
    ))
    .bind(&job.id)
    .bind(&job.template_id)
    .bind(&job.inputs)
    .bind(&job.workflow)
    .bind(status)
    .bind(placement.map(|(worker, _)| worker))
    .bind(placement.map(|(_, prompt)| prompt))
    .bind(attempts)
    .bind(max_attempts)
    .bind(&job.deliver_to)
    .bind(&job.requested_by)
    .bind(job.approval_id.as_deref())
    .bind(now_ms)
    .bind(placement.map(|_| now_ms))
    .fetch_optional(store.pool())
    .await?;
    match row {
        Some(row) => Ok(row),
        None => Err(StoreError::Conflict(format!("job id {:?} is taken", job.id))),
    }
}

impl JobStore for PgStore {
    async fn insert_job(&self, job: &NewJob, now_ms: i64) -> Result<JobRecord> {
        if !matches!(job.status, JobStatus::Queued | JobStatus::AwaitingApproval) {
            return Err(StoreError::Conflict(format!("a job cannot be inserted as {}", job.status)));
        }
        if job.max_attempts < 1 {
            return Err(StoreError::Conflict(format!("max_attempts must be at least 1, not {}", job.max_attempts)));
        }
        insert_job_row(self, job, job.status, None, 0, job.max_attempts, now_ms).await
    }

    async fn adopt_job(&self, job: &NewJob, worker: &str, prompt_id: &str, now_ms: i64) -> Result<JobRecord> {
        insert_job_row(self, job, JobStatus::Running, Some((worker, prompt_id)), 1, 1, now_ms).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let mut conn = self.pool().acquire().await?;
        fetch_job(&mut conn, id).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        sqlx::query_as::<_, JobRecord>(&format!(
            "SELECT {JOB_COLUMNS} FROM comfy_jobs \
             WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) AND ($2 IS NULL OR seq < $2) \
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(statuses)
        .bind(query.before_seq)
        .bind(i64::from(query.limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn queue_position(&self, id: &str) -> Result<Option<(u64, u64)>> {
        let counts: Option<(i64, i64)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM comfy_jobs AS q WHERE q.status = 'queued' AND q.seq <= j.seq), \
                    (SELECT COUNT(*) FROM comfy_jobs AS q WHERE q.status = 'queued') \
             FROM comfy_jobs AS j WHERE j.id = $1 AND j.status = 'queued'",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        counts.map(|(position, total)| Ok((count("queue position", position)?, count("queued", total)?))).transpose()
    }

    async fn claim_next_queued(&self, worker: &str, now_ms: i64) -> Result<Option<JobRecord>> {
        // One statement, so choosing the head and taking it happen under one write lock: two
        // workers can never both take the same job.
        sqlx::query_as::<_, JobRecord>(&format!(
            "UPDATE comfy_jobs SET status = 'dispatched', worker = $1, attempts = attempts + 1, updated_at_ms = $2 \
             WHERE seq = (SELECT seq FROM comfy_jobs WHERE status = 'queued' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
             AND status = 'queued' \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(worker)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn set_job_running(&self, id: &str, prompt_id: &str, now_ms: i64) -> Result<JobRecord> {
        guarded_update!(
            self,
            id,
            "start",
            format!(
                "UPDATE comfy_jobs SET status = 'running', prompt_id = $2, \
                 started_at_ms = COALESCE(started_at_ms, $3), updated_at_ms = $3 \
                 WHERE id = $1 AND status IN ('dispatched', 'running') RETURNING {JOB_COLUMNS}"
            ),
            |q| q.bind(prompt_id).bind(now_ms)
        )
    }

    async fn set_job_progress(&self, id: &str, progress: &Value, now_ms: i64) -> Result<JobRecord> {
        guarded_update!(
            self,
            id,
            "report progress of",
            format!(
                "UPDATE comfy_jobs SET progress = $2, updated_at_ms = $3 \
                 WHERE id = $1 AND status IN ('dispatched', 'running') RETURNING {JOB_COLUMNS}"
            ),
            |q| q.bind(progress).bind(now_ms)
        )
    }

    async fn complete_job(&self, id: &str, outputs: &Value, now_ms: i64) -> Result<JobRecord> {
        guarded_update!(
            self,
            id,
            "complete",
            format!(
                "UPDATE comfy_jobs SET status = 'completed', outputs = $2, error = NULL, ended_at_ms = $3, \
                 updated_at_ms = $3 WHERE id = $1 AND status IN ('dispatched', 'running') RETURNING {JOB_COLUMNS}"
            ),
            |q| q.bind(outputs).bind(now_ms)
        )
    }

    async fn fail_job(&self, id: &str, error: &str, now_ms: i64) -> Result<JobRecord> {
        guarded_update!(
            self,
            id,
            "fail",
            format!(
                "UPDATE comfy_jobs SET status = 'failed', error = $2, ended_at_ms = $3, updated_at_ms = $3 \
                 WHERE id = $1 AND status IN ('awaiting_approval', 'queued', 'dispatched', 'running') \
                 RETURNING {JOB_COLUMNS}"
            ),
            |q| q.bind(error).bind(now_ms)
        )
    }

    async fn cancel_job(&self, id: &str, now_ms: i64) -> Result<Option<JobRecord>> {
        // The caller needs the job as it was (which worker held it), so read and update under
        // one write lock.
        let mut tx = self.begin_write().await?;
        let Some(before) = fetch_job(&mut tx, id).await? else {
            return Err(StoreError::NotFound);
        };
        if before.status.is_terminal() {
            return Ok(None);
        }
        sqlx::query("UPDATE comfy_jobs SET status = 'cancelled', ended_at_ms = $2, updated_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(Some(before))
    }

    async fn requeue_job(&self, id: &str, error: &str, now_ms: i64) -> Result<JobStatus> {
        // SET expressions all see the row as it was, so `attempts < max_attempts` is the same
        // test in every column. The row (and its seq) stays: the job keeps its place in line.
        let mut conn = self.pool().acquire().await?;
        let status: Option<JobStatus> = sqlx::query_scalar(
            "UPDATE comfy_jobs SET \
             status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
             worker = CASE WHEN attempts < max_attempts THEN NULL ELSE worker END, \
             prompt_id = CASE WHEN attempts < max_attempts THEN NULL ELSE prompt_id END, \
             progress = CASE WHEN attempts < max_attempts THEN NULL ELSE progress END, \
             started_at_ms = CASE WHEN attempts < max_attempts THEN NULL ELSE started_at_ms END, \
             ended_at_ms = CASE WHEN attempts < max_attempts THEN NULL ELSE $3 END, \
             error = $2, updated_at_ms = $3 \
             WHERE id = $1 AND status IN ('dispatched', 'running') RETURNING status",
        )
        .bind(id)
        .bind(error)
        .bind(now_ms)
        .fetch_optional(&mut *conn)
        .await?;
        match status {
            Some(status) => Ok(status),
            None => match job_status(&mut conn, id).await? {
                None => Err(StoreError::NotFound),
                Some(status) => Err(StoreError::Conflict(format!("job {id} is {status}, cannot requeue it"))),
            },
        }
    }

    async fn release_approval(&self, id: &str, approved: bool, now_ms: i64) -> Result<JobRecord> {
        guarded_update!(
            self,
            id,
            "release",
            format!(
                "UPDATE comfy_jobs SET status = CASE WHEN $2 THEN 'queued' ELSE 'cancelled' END, \
                 ended_at_ms = CASE WHEN $2 THEN NULL ELSE $3 END, updated_at_ms = $3 \
                 WHERE id = $1 AND status = 'awaiting_approval' RETURNING {JOB_COLUMNS}"
            ),
            |q| q.bind(approved).bind(now_ms)
        )
    }

    async fn jobs_on_worker(&self, worker: &str) -> Result<Vec<JobRecord>> {
        sqlx::query_as::<_, JobRecord>(&format!(
            "SELECT {JOB_COLUMNS} FROM comfy_jobs \
             WHERE worker = $1 AND status IN ('dispatched', 'running') ORDER BY seq"
        ))
        .bind(worker)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn active_jobs(&self) -> Result<Vec<JobRecord>> {
        sqlx::query_as::<_, JobRecord>(&format!(
            "SELECT {JOB_COLUMNS} FROM comfy_jobs WHERE status IN ('dispatched', 'running') ORDER BY seq"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn count_by_status(&self) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(JobStatus, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM comfy_jobs GROUP BY status").fetch_all(self.pool()).await?;
        let mut counts: BTreeMap<String, u64> = JobStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        for (status, n) in rows {
            counts.insert(status.as_str().to_owned(), count("job", n)?);
        }
        Ok(counts)
    }

    async fn mark_output_delivered(&self, job_id: &str, filename: &str, now_ms: i64) -> Result<bool> {
        // One statement: the unique index decides which caller marks the output.
        let mut conn = self.pool().acquire().await?;
        let inserted = sqlx::query(
            "INSERT INTO comfy_job_deliveries (job_id, filename, delivered_at_ms) \
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM comfy_jobs WHERE id = $1) \
             ON CONFLICT (job_id, filename) DO NOTHING",
        )
        .bind(job_id)
        .bind(filename)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        match job_status(&mut conn, job_id).await? {
            None => Err(StoreError::NotFound),
            Some(_) => Ok(false),
        }
    }

    async fn delivered_outputs(&self, job_id: &str) -> Result<Vec<String>> {
        let names = sqlx::query_scalar("SELECT filename FROM comfy_job_deliveries WHERE job_id = $1 ORDER BY id")
            .bind(job_id)
            .fetch_all(self.pool())
            .await?;
        Ok(names)
    }

    async fn prune_finished_jobs(&self, older_than_ms: i64) -> Result<u64> {
        // Delivery marks go first and explicitly, not by relying on the cascade (which needs
        // `foreign_keys` on).
        let mut tx = self.begin_write().await?;
        const FINISHED: &str =
            "SELECT id FROM comfy_jobs WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at_ms < $1";
        sqlx::query(&format!("DELETE FROM comfy_job_deliveries WHERE job_id IN ({FINISHED})"))
            .bind(older_than_ms)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query(&format!("DELETE FROM comfy_jobs WHERE id IN ({FINISHED})"))
            .bind(older_than_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.commit(tx).await?;
        Ok(deleted)
    }
}
