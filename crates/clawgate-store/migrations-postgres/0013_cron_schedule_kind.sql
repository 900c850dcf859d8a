-- Cron schedules beside cron expressions (see the SQLite migration of the same number).
ALTER TABLE cron_jobs ADD COLUMN schedule_kind TEXT NOT NULL DEFAULT 'cron'
    CHECK (schedule_kind IN ('cron', 'every', 'at'));
ALTER TABLE cron_jobs ADD COLUMN anchor_ms BIGINT;
ALTER TABLE cron_jobs ADD COLUMN delete_after_run BOOLEAN NOT NULL DEFAULT FALSE;
