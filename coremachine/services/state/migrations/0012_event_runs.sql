-- A transaction's events of one job are written as one row, a run, instead of
-- a row per event: a claim batch of 128 tasks wrote 128 task_started rows (and
-- their index entries, each WAL-logged); it now writes one. A run holds the
-- events numbered last_seq - n + 1 .. last_seq, in order; numbering is
-- unchanged (jobs.last_event_seq, bumped under the job row lock the writer
-- holds), so readers still see a gap-free sequence per job and resume "after
-- seq N" as before.
--
-- coremachine.job_events becomes a view of the runs, one row per event, for
-- the queries that look at a job's events as a whole (diagnosis, tests, ad-hoc
-- SQL); the event stream reads the runs themselves (queries.sql events_page)
-- so that a page after seq N starts at the run holding N + 1.
CREATE TABLE coremachine.job_event_runs (
    job_id       text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
    last_seq     bigint NOT NULL,
    n            integer NOT NULL CHECK (n >= 1),
    -- The distinct event types in the run, and whether one is job-level (no
    -- task): readers of a few kinds of event pass over the other runs unread.
    event_types  text[] NOT NULL,
    job_level    boolean NOT NULL,
    -- [{event_type, stage, task_id, data}], in sequence order.
    events       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, last_seq)
);

INSERT INTO coremachine.job_event_runs
    (job_id, last_seq, n, event_types, job_level, events, created_at)
SELECT job_id, seq, 1, ARRAY[event_type], task_id IS NULL,
       jsonb_build_array(jsonb_build_object('event_type', event_type, 'stage', stage,
                                            'task_id', task_id, 'data', data)),
       created_at
FROM coremachine.job_events;

DROP TABLE coremachine.job_events;

CREATE VIEW coremachine.job_events AS
SELECT r.job_id, r.last_seq - r.n + x.i AS seq, x.e->>'event_type' AS event_type,
       (x.e->>'stage')::integer AS stage, x.e->>'task_id' AS task_id,
       coalesce(x.e->'data', '{}') AS data, r.created_at
FROM coremachine.job_event_runs r
CROSS JOIN LATERAL jsonb_array_elements(r.events) WITH ORDINALITY AS x(e, i);

CREATE OR REPLACE FUNCTION coremachine.append_events(events jsonb, end_events text[])
RETURNS integer
LANGUAGE plpgsql  -- not sql: PL/pgSQL keeps the statement's plan for the session
AS $$
DECLARE
    jobs integer;
BEGIN
    WITH e AS (
        SELECT x.e->>'job_id' AS job_id, x.e->>'event_type' AS event_type,
               x.e->>'task_id' AS task_id, x.e - 'job_id' AS body, x.ord
        FROM jsonb_array_elements(events) WITH ORDINALITY AS x(e, ord)
    ), counts AS (
        SELECT e.job_id, count(*)::integer AS n,
               array_agg(DISTINCT e.event_type) AS event_types,
               bool_or(e.task_id IS NULL) AS job_level,
               bool_or(e.event_type = ANY(end_events)) AS job_end,
               jsonb_agg(e.body ORDER BY e.ord) AS body
        FROM e GROUP BY e.job_id
    ), bumped AS (
        UPDATE coremachine.jobs j
        SET last_event_seq = j.last_event_seq + c.n
        FROM counts c
        WHERE j.job_id = c.job_id
        RETURNING j.job_id, j.last_event_seq AS last_seq
    ), inserted AS (
        INSERT INTO coremachine.job_event_runs (job_id, last_seq, n, event_types, job_level, events)
        SELECT c.job_id, b.last_seq, c.n, c.event_types, c.job_level, c.body
        FROM counts c JOIN bumped b ON b.job_id = c.job_id
    )
    SELECT count(pg_notify('cm_job_events',
                           c.job_id || CASE WHEN c.job_end THEN ' end'
                                            WHEN c.job_level THEN ' job' ELSE ' task' END))
    INTO jobs FROM counts c;
    RETURN jobs;
END;
$$;
