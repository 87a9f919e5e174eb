-- When the janitor last re-sent a queued task's message because it was gone
-- (a broker that lost it, an operator who purged it): it is not sent again
-- more often than its setting allows.
ALTER TABLE coremachine.tasks ADD COLUMN resent_at timestamptz;
