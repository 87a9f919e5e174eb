-- Jobs whose type has no aggregator get the default summary as their result:
-- the state service records it in the transaction that completes the last
-- stage, instead of sending the orchestrator a "finalize" message.
ALTER TABLE coremachine.jobs ADD COLUMN default_result boolean NOT NULL DEFAULT false;
