-- A queue table turns over completely: every message is inserted, updated
-- when delivered and deleted when settled. Vacuum it after a fixed number of
-- dead rows rather than a fraction of a (tiny) live table, and without
-- throttling, so that after a burst of 100,000 messages the receive index is
-- cleaned within one autovacuum round instead of slowing every receive.
ALTER TABLE broker.messages SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
