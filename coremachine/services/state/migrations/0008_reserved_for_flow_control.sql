-- Placeholder: 0008 belongs to the flow-control branch (schedules, priorities,
-- concurrency keys). Migrations must be numbered without gaps, so this
-- branch's own migration (0009) needs an 0008; drop this file when merging
-- beside the real one.
SELECT 1;
