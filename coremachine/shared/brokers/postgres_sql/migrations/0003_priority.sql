-- Priorities: a message of priority p (0..9, 5 normal) is received as if it
-- had become visible (p - 5) * aging seconds earlier (BROKER_PRIORITY_AGING_SECONDS):
-- higher priorities go first, and a lower one is passed by newer higher ones
-- for a bounded time only, so nothing starves. rank_at is kept equal to
-- visible_at - (priority - 5) * aging by every statement that sets visible_at;
-- at the normal priority it is visible_at, so the order is what it was.
ALTER TABLE broker.messages
    ADD COLUMN priority smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    ADD COLUMN rank_at timestamptz;
UPDATE broker.messages SET rank_at = visible_at;
ALTER TABLE broker.messages ALTER COLUMN rank_at SET NOT NULL;
CREATE INDEX messages_rank_idx ON broker.messages (queue, rank_at, seq) WHERE NOT dead_lettered;
