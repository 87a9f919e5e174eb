-- Claims and settlements find each task by its key. An index on the status
-- alone (five values) and the partial lease index "WHERE status =
-- 'processing'" let the planner answer "processing tasks with these ids" by
-- scanning every processing task instead: right after a large job, before
-- vacuum, that was a walk through hundreds of thousands of dead index
-- entries on every claim and every report. Neither index is needed:
-- - expired leases are found by lease_expires_at, which is set exactly while
--   a task is processing (claims set it; settlement, release, cancel and
--   redrive clear it), so a partial index on "IS NOT NULL" serves the
--   janitor, and no claim or settlement can use it;
-- - listing tasks by status goes through (job_id, stage, task_index); the
--   rare status worth an index of its own is "failed" (failure reports).
DROP INDEX coremachine.tasks_status_idx;
DROP INDEX coremachine.tasks_lease_expiry_idx;
CREATE INDEX tasks_lease_expiry_idx ON coremachine.tasks (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
CREATE INDEX tasks_failed_idx ON coremachine.tasks (job_id, stage, task_index)
    WHERE status = 'failed';
