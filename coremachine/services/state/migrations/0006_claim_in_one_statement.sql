-- Appending events and claiming tasks as functions, so that a claim is one
-- statement (one round trip, its own transaction) instead of five: BEGIN,
-- lock the jobs, claim, append the task_started events, COMMIT. A claim is on
-- the path of every task, twice per two-stage job.

-- Numbers the events per job from jobs.last_event_seq (the caller holds the
-- job row locks, so numbers are gap-free and in commit order), inserts them,
-- and NOTIFYs watchers (long-polling ListEvents) once per job at commit. The
-- payload says the highest level among the events added (the job's end, a
-- job-level event, or task events only), so that readers waiting for
-- job-level events or for the end only are not woken by every task.
-- Returns the number of jobs that got events.
CREATE FUNCTION coremachine.append_events(events jsonb, end_events text[])
RETURNS integer
LANGUAGE plpgsql  -- not sql: PL/pgSQL keeps the statement's plan for the session
AS $$
DECLARE
    jobs integer;
BEGIN
    WITH e AS (
        SELECT x.job_id, x.event_type, x.stage, x.task_id, coalesce(x.data, '{}') AS data,
               row_number() OVER (PARTITION BY x.job_id ORDER BY x.ord) AS k
        FROM ROWS FROM (jsonb_to_recordset(events)
                        AS (job_id text, event_type text, stage int, task_id text, data jsonb))
             WITH ORDINALITY AS x(job_id, event_type, stage, task_id, data, ord)
    ), counts AS (
        SELECT e.job_id, max(e.k) AS n, bool_or(e.task_id IS NULL) AS job_level,
               bool_or(e.event_type = ANY(end_events)) AS job_end
        FROM e GROUP BY e.job_id
    ), bumped AS (
        UPDATE coremachine.jobs j
        SET last_event_seq = j.last_event_seq + c.n
        FROM counts c
        WHERE j.job_id = c.job_id
        RETURNING j.job_id, j.last_event_seq - c.n AS base
    ), inserted AS (
        INSERT INTO coremachine.job_events (job_id, seq, event_type, stage, task_id, data)
        SELECT e.job_id, b.base + e.k, e.event_type, e.stage, e.task_id, e.data
        FROM e JOIN bumped b ON b.job_id = e.job_id
    )
    SELECT count(pg_notify('cm_job_events',
                           c.job_id || CASE WHEN c.job_end THEN ' end'
                                            WHEN c.job_level THEN ' job' ELSE ' task' END))
    INTO jobs FROM counts c;
    RETURN jobs;
END;
$$;

-- Grants a lease on each queued task whose attempt matches its claim, and
-- records a task_started event per granted task. Lock order as everywhere:
-- the jobs rows first (in key order), then the tasks rows.
CREATE FUNCTION coremachine.claim_tasks(worker_id text, lease_seconds integer, claims jsonb)
RETURNS TABLE (
    task_id text, job_id text, job_type text, task_type text, stage integer,
    task_index integer, attempt integer, parameters_json text, lease_token text
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM coremachine.jobs j
    WHERE j.job_id IN (SELECT t.job_id FROM coremachine.tasks t
                       WHERE t.task_id IN (SELECT c.task_id
                                           FROM jsonb_to_recordset(claims) AS c(task_id text)))
    ORDER BY j.job_id
    FOR UPDATE;

    RETURN QUERY
    WITH claimed AS (
        UPDATE coremachine.tasks t
        SET status = 'processing', lease_token = gen_random_uuid(),
            lease_owner = claim_tasks.worker_id,
            lease_expires_at = now() + make_interval(secs => claim_tasks.lease_seconds),
            started_at = coalesce(t.started_at, now()), updated_at = now()
        FROM jsonb_to_recordset(claims) AS c(task_id text, attempt int)
        WHERE t.task_id = c.task_id AND t.attempt = c.attempt AND t.status = 'queued'
        -- Parameters as text: handed to the worker verbatim, never decoded here.
        RETURNING t.task_id, t.job_id, t.job_type, t.task_type, t.stage, t.task_index,
                  t.attempt, t.parameters::text AS parameters_json,
                  t.lease_token::text AS lease_token
    ), logged AS (
        -- One row whatever was claimed (an aggregate), so the join below
        -- always runs it: the task_started events of this claim.
        SELECT coremachine.append_events(
                   coalesce(jsonb_agg(jsonb_build_object(
                       'job_id', c.job_id, 'event_type', 'task_started', 'stage', c.stage,
                       'task_id', c.task_id, 'data', jsonb_build_object('attempt', c.attempt))
                       ORDER BY c.job_id, c.task_index), '[]'),
                   '{}') AS jobs
        FROM claimed c
    )
    SELECT c.task_id, c.job_id, c.job_type, c.task_type, c.stage, c.task_index, c.attempt,
           c.parameters_json, c.lease_token
    FROM claimed c CROSS JOIN logged;
END;
$$;
