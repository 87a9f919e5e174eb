-- A redriven task gets a fresh retry budget: retries are counted from
-- attempt_base (the attempt number before the redrive), while the attempt
-- number itself keeps growing so every delivery stays distinguishable.
ALTER TABLE coremachine.tasks ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;
