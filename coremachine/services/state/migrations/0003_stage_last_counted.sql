-- When a stage last had outcomes counted: the janitor only re-examines a
-- running stage that has been quiet for a while, so a busy 100,000-task stage
-- is never scanned by its sweeps.
ALTER TABLE coremachine.job_stages ADD COLUMN last_counted_at timestamptz;
