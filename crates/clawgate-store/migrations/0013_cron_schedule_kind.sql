-- Cron schedules beside cron expressions: upstream's `{kind:"every", everyMs, anchorMs?}` and
-- `{kind:"at", at}`. `schedule` keeps the kind's own text (the expression, the interval in
-- milliseconds, or the `at` time as given); `anchor_ms` is an `every` schedule's anchor (its
-- slots are anchor + k × interval); `delete_after_run` removes an `at` job once it ran
-- successfully (upstream's `deleteAfterRun`). Existing rows are cron expressions.
ALTER TABLE cron_jobs ADD COLUMN schedule_kind TEXT NOT NULL DEFAULT 'cron'
    CHECK (schedule_kind IN ('cron', 'every', 'at'));
ALTER TABLE cron_jobs ADD COLUMN anchor_ms INTEGER;
ALTER TABLE cron_jobs ADD COLUMN delete_after_run INTEGER NOT NULL DEFAULT 0 CHECK (delete_after_run IN (0, 1));
