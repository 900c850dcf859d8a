-- ComfyUI work: the job queue, per-output delivery receipts, operator approvals, and
-- scheduled (cron) jobs with one receipt per scheduled slot.
-- JSON-valued columns hold JSON text. Timestamps are Unix epoch milliseconds supplied by the
-- caller.

-- One row per job for its whole life. `seq` is the enqueue order: workers claim the queued
-- job with the smallest seq, and a requeued job keeps its row, so it keeps its place.
-- AUTOINCREMENT: seqs are never reused, so paging by seq stays stable after pruning.
CREATE TABLE comfy_jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL,
    template_id   TEXT NOT NULL,
    inputs        TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('awaiting_approval', 'queued', 'dispatched', 'running',
                                                  'completed', 'failed', 'cancelled')),
    worker        TEXT,
    prompt_id     TEXT,
    attempts      INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    error         TEXT,
    outputs       TEXT NOT NULL,
    deliver_to    TEXT,
    requested_by  TEXT,
    approval_id   TEXT,
    progress      TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms   INTEGER
) STRICT;

CREATE UNIQUE INDEX comfy_jobs_by_id ON comfy_jobs (id);
-- The head of the queue, and queue positions.
CREATE INDEX comfy_jobs_queued ON comfy_jobs (seq) WHERE status = 'queued';
-- Jobs a worker holds (worker loss, restart reconciliation).
CREATE INDEX comfy_jobs_active ON comfy_jobs (worker, seq) WHERE status IN ('dispatched', 'running');
-- Listings by status, newest first.
CREATE INDEX comfy_jobs_by_status ON comfy_jobs (status, seq);
-- Finished jobs by age, for pruning.
CREATE INDEX comfy_jobs_finished ON comfy_jobs (updated_at_ms) WHERE status IN ('completed', 'failed', 'cancelled');

-- One row per output file handed to the delivery path, so a job's outputs are delivered once
-- even if completion is observed again after a restart.
CREATE TABLE comfy_job_deliveries (
    job_id          TEXT NOT NULL REFERENCES comfy_jobs (id) ON DELETE CASCADE,
    filename        TEXT NOT NULL,
    delivered_at_ms INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX comfy_job_deliveries_once ON comfy_job_deliveries (job_id, filename);

-- Operator approvals. A pending row whose expiry has passed counts as expired whether or not
-- `expire_approvals` has rewritten it yet.
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    requested_by  TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    reason        TEXT,
    decided_by    TEXT,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    decided_at_ms INTEGER
) STRICT;

CREATE INDEX approvals_pending ON approvals (expires_at_ms) WHERE status = 'pending';
CREATE INDEX approvals_by_created ON approvals (created_at_ms);

-- Scheduled jobs. `last_run_at_ms`, `last_status` and `next_run_at_ms` are the scheduler's
-- state; the rest is the definition.
CREATE TABLE cron_jobs (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    schedule       TEXT NOT NULL,
    timezone       TEXT,
    enabled        INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    deliver_to     TEXT,
    catch_up       TEXT NOT NULL CHECK (catch_up IN ('skip', 'once', 'all')),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    last_run_at_ms INTEGER,
    last_status    TEXT,
    next_run_at_ms INTEGER
) STRICT;

CREATE INDEX cron_jobs_by_name ON cron_jobs (name, id);

-- One receipt per (job, scheduled slot). The primary key is what makes a slot fire once: the
-- scheduler claims a slot by inserting its receipt, and of any number of claimers, across
-- restarts and processes, exactly one insert succeeds.
CREATE TABLE cron_runs (
    job_id         TEXT NOT NULL,
    slot_ms        INTEGER NOT NULL,
    run_id         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'skipped')),
    summary        TEXT,
    error          TEXT,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    PRIMARY KEY (job_id, slot_ms)
) STRICT;

-- Recent runs across every job.
CREATE INDEX cron_runs_recent ON cron_runs (started_at_ms);
