-- Job types are user code (apps), their tasks run in worker pools, and a
-- job keeps the definition it started with through rolling deploys.

-- The fingerprint of the job type's definition a job was created with: only
-- an orchestrator serving that definition plans its stages. `waiting` says
-- why a job does not move when its next message is parked (below).
ALTER TABLE coremachine.jobs
    ADD COLUMN definition text NOT NULL DEFAULT '',
    ADD COLUMN waiting text;

-- A stage's policy as its tasks run it: the queue (worker pool) its tasks
-- go to (NULL: the service's TASKS_QUEUE, as before this migration), the
-- per-attempt timeout and heartbeat timeout (0: none), whether handlers get
-- the previous stage's results, and the latest progress a task reported.
ALTER TABLE coremachine.job_stages
    ADD COLUMN queue text,
    ADD COLUMN task_timeout_ms integer NOT NULL DEFAULT 0 CHECK (task_timeout_ms >= 0),
    ADD COLUMN heartbeat_timeout_ms integer NOT NULL DEFAULT 0 CHECK (heartbeat_timeout_ms >= 0),
    ADD COLUMN previous_results boolean NOT NULL DEFAULT false,
    ADD COLUMN last_progress jsonb;

-- The latest progress a running task reported (current, total, message, at).
ALTER TABLE coremachine.tasks ADD COLUMN progress jsonb;

-- Every definition an orchestrator has registered, with its parameter schema.
CREATE TABLE coremachine.job_definitions (
    job_type             text NOT NULL,
    fingerprint          text NOT NULL,
    parameters_schema    jsonb NOT NULL,
    definition           jsonb NOT NULL,
    first_registered_at  timestamptz NOT NULL DEFAULT now(),
    last_registered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_type, fingerprint)
);

-- Running orchestrators and the definitions (fingerprints) each serves; a
-- registration holds until expires_at and is renewed as a heartbeat.
CREATE TABLE coremachine.orchestrators (
    orchestrator_id  text PRIMARY KEY,
    host             text NOT NULL,
    version          text NOT NULL DEFAULT '',
    definitions      text[] NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);

-- Jobs-queue messages for a definition no running orchestrator serves:
-- kept here (never dead-lettered) until one registers, then sent again.
CREATE TABLE coremachine.parked_messages (
    message_id  text PRIMARY KEY,
    job_id      text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
    job_type    text NOT NULL,
    definition  text NOT NULL,
    body        bytea NOT NULL,
    reason      text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_messages_definition_idx ON coremachine.parked_messages (definition);
CREATE INDEX parked_messages_job_idx ON coremachine.parked_messages (job_id);

-- Workers heartbeat here: their pool (queues), the task types they run and
-- their load. A worker past expires_at without stopping is lost.
CREATE TABLE coremachine.workers (
    worker_id     text PRIMARY KEY,
    host          text NOT NULL,
    queues        text[] NOT NULL,
    task_types    text[] NOT NULL,
    concurrency   integer NOT NULL,
    in_flight     integer NOT NULL DEFAULT 0,
    version       text NOT NULL DEFAULT '',
    started_at    timestamptz,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    stopped_at    timestamptz
);

-- Claims also return the stage's policy: the worker applies the timeout and
-- heartbeat timeout and fetches previous results as the job's definition
-- says, whatever version of the app the worker itself has loaded. Each
-- task_started event records the worker and queue of that attempt.
DROP FUNCTION coremachine.claim_tasks(text, integer, jsonb);
CREATE FUNCTION coremachine.claim_tasks(worker_id text, lease_seconds integer, claims jsonb)
RETURNS TABLE (
    task_id text, job_id text, job_type text, task_type text, stage integer,
    task_index integer, attempt integer, parameters_json text, lease_token text,
    queue text, task_timeout_ms integer, heartbeat_timeout_ms integer,
    previous_results boolean
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
        FROM jsonb_to_recordset(claims) AS c(task_id text, attempt int),
             coremachine.job_stages s
        WHERE t.task_id = c.task_id AND t.attempt = c.attempt AND t.status = 'queued'
          AND s.job_id = t.job_id AND s.stage = t.stage
        -- Parameters as text: handed to the worker verbatim, never decoded here.
        RETURNING t.task_id, t.job_id, t.job_type, t.task_type, t.stage, t.task_index,
                  t.attempt, t.parameters::text AS parameters_json,
                  t.lease_token::text AS lease_token, coalesce(s.queue, '') AS queue,
                  s.task_timeout_ms, s.heartbeat_timeout_ms, s.previous_results
    ), logged AS (
        SELECT coremachine.append_events(
                   coalesce(jsonb_agg(jsonb_build_object(
                       'job_id', c.job_id, 'event_type', 'task_started', 'stage', c.stage,
                       'task_id', c.task_id,
                       'data', jsonb_build_object('attempt', c.attempt, 'worker_id',
                                                  claim_tasks.worker_id, 'queue', c.queue))
                       ORDER BY c.job_id, c.task_index), '[]'),
                   '{}') AS jobs
        FROM claimed c
    )
    SELECT c.task_id, c.job_id, c.job_type, c.task_type, c.stage, c.task_index, c.attempt,
           c.parameters_json, c.lease_token, c.queue, c.task_timeout_ms,
           c.heartbeat_timeout_ms, c.previous_results
    FROM claimed c CROSS JOIN logged;
END;
$$;
