-- Named queries of the PostgreSQL-backed queue (shared/brokers/postgres.py).

-- name: send
-- One round trip: the insert, and a NOTIFY delivered when the transaction
-- commits (scheduled messages are found by the consumer's next-visible timer).
WITH inserted AS (
    INSERT INTO broker.messages (queue, message_id, body, properties, visible_at)
    SELECT %(queue)s, m.message_id, decode(m.body, 'base64'), coalesce(m.properties, '{}'),
           coalesce(m.scheduled_at, now())
    FROM jsonb_to_recordset(%(messages)s::jsonb)
         AS m(message_id text, body text, properties jsonb, scheduled_at timestamptz)
    ON CONFLICT (queue, message_id) DO NOTHING
)
SELECT pg_notify(%(channel)s, '');

-- name: notify
SELECT pg_notify(%(channel)s, '');

-- name: receive
-- Locks up to `limit` visible messages. Candidates already delivered
-- max_delivery_count times are dead-lettered instead of delivered again.
-- Every row also says in how many seconds the next of the other messages
-- becomes visible (NULL: none); with nothing to deliver, it is the only row.
WITH candidates AS (
    SELECT seq FROM broker.messages
    WHERE queue = %(queue)s AND NOT dead_lettered AND visible_at <= now()
    ORDER BY visible_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), exhausted AS (
    UPDATE broker.messages m
    SET dead_lettered = true, dead_letter_reason = %(max_delivery_reason)s,
        dead_letter_description = 'delivered ' || m.delivery_count || ' times without being settled',
        dead_lettered_at = now(), lock_token = NULL
    FROM candidates c
    WHERE m.seq = c.seq AND m.delivery_count >= %(max_delivery_count)s
    RETURNING m.seq
), delivered AS (
    UPDATE broker.messages m
    SET delivery_count = m.delivery_count + 1, lock_token = gen_random_uuid(),
        visible_at = now() + make_interval(secs => %(lock_seconds)s)
    FROM candidates c
    WHERE m.seq = c.seq AND m.delivery_count < %(max_delivery_count)s
    RETURNING m.seq, m.message_id, m.body, m.properties, m.delivery_count, m.enqueued_at,
              m.visible_at, m.lock_token
), next_visible AS (
    -- Read before this statement's updates: the candidates are left out.
    SELECT extract(epoch FROM min(visible_at) - now())::float8 AS next_in
    FROM broker.messages
    WHERE queue = %(queue)s AND NOT dead_lettered AND seq NOT IN (SELECT seq FROM candidates)
)
SELECT d.*, n.next_in FROM next_visible n LEFT JOIN delivered d ON true ORDER BY d.seq;

-- name: complete
DELETE FROM broker.messages m
USING jsonb_to_recordset(%(locks)s::jsonb) AS s(seq bigint, token uuid)
WHERE m.seq = s.seq AND m.lock_token = s.token AND m.visible_at > now() AND NOT m.dead_lettered
RETURNING m.seq;

-- name: abandon
UPDATE broker.messages m
SET lock_token = NULL, visible_at = now() + make_interval(secs => %(delay_seconds)s)
FROM jsonb_to_recordset(%(locks)s::jsonb) AS s(seq bigint, token uuid)
WHERE m.seq = s.seq AND m.lock_token = s.token AND m.visible_at > now() AND NOT m.dead_lettered
RETURNING m.seq;

-- name: dead_letter
UPDATE broker.messages
SET dead_lettered = true, dead_letter_reason = %(reason)s,
    dead_letter_description = %(description)s, dead_lettered_at = now(), lock_token = NULL
WHERE seq = %(seq)s AND lock_token = %(token)s AND visible_at > now() AND NOT dead_lettered
RETURNING seq;

-- name: renew_locks
UPDATE broker.messages m
SET visible_at = now() + make_interval(secs => %(lock_seconds)s)
FROM jsonb_to_recordset(%(locks)s::jsonb) AS s(seq bigint, token uuid)
WHERE m.seq = s.seq AND m.lock_token = s.token AND m.visible_at > now() AND NOT m.dead_lettered
RETURNING m.seq, m.visible_at;

-- name: queue_depth
SELECT count(*) FROM broker.messages WHERE queue = %(queue)s AND NOT dead_lettered;

-- name: dead_letter_count
SELECT count(*) FROM broker.messages WHERE queue = %(queue)s AND dead_lettered;

-- name: present_messages
-- Which of these message ids the queue holds (live or dead-lettered): the
-- janitor re-sends a queued task's message only when it is gone.
SELECT message_id FROM broker.messages
WHERE queue = %(queue)s AND message_id = ANY(%(message_ids)s::text[]);

-- name: queue_stats
SELECT count(*) FILTER (WHERE NOT dead_lettered),
       count(*) FILTER (WHERE dead_lettered),
       min(enqueued_at) FILTER (WHERE NOT dead_lettered AND visible_at <= now())
FROM broker.messages WHERE queue = %(queue)s;

-- name: list_dead_letters
SELECT seq, message_id, body, properties, delivery_count, dead_letter_reason,
       dead_letter_description, enqueued_at, dead_lettered_at
FROM broker.messages
WHERE queue = %(queue)s AND dead_lettered
ORDER BY seq
LIMIT %(limit)s;

-- name: replay_dead_letters
UPDATE broker.messages
SET dead_lettered = false, dead_letter_reason = NULL, dead_letter_description = NULL,
    dead_lettered_at = NULL, delivery_count = 0, visible_at = now(), lock_token = NULL
WHERE queue = %(queue)s AND dead_lettered AND seq = ANY(%(seqs)s::bigint[])
RETURNING seq;

-- name: purge_dead_letters
DELETE FROM broker.messages
WHERE queue = %(queue)s AND dead_lettered AND seq = ANY(%(seqs)s::bigint[])
RETURNING seq;
