-- The PostgreSQL-backed queue (broker port, local default). It lives in its
-- own schema: it is the broker's storage, not the state service's.
CREATE SCHEMA IF NOT EXISTS broker;

CREATE TABLE broker.messages (
    seq                 bigserial PRIMARY KEY,
    queue               text NOT NULL,
    message_id          text NOT NULL,
    body                bytea NOT NULL,
    properties          jsonb NOT NULL DEFAULT '{}',
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    -- Not deliverable before this instant: scheduled delivery, or the end of
    -- the current peek-lock.
    visible_at          timestamptz NOT NULL DEFAULT now(),
    delivery_count      integer NOT NULL DEFAULT 0,
    lock_token          uuid,
    dead_lettered       boolean NOT NULL DEFAULT false,
    dead_letter_reason  text,
    dead_letter_description text,
    dead_lettered_at    timestamptz
);
-- Duplicate detection: one live message per id and queue.
CREATE UNIQUE INDEX messages_queue_message_id_key ON broker.messages (queue, message_id);
CREATE INDEX messages_ready_idx ON broker.messages (queue, visible_at, seq)
    WHERE NOT dead_lettered;
CREATE INDEX messages_dead_idx ON broker.messages (queue, seq) WHERE dead_lettered;
