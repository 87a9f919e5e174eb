-- Flow control, enforced in the state service's transactions so that it holds
-- with any number of replicas of any service: job priorities, delayed starts,
-- a limit on running jobs per job type, and concurrency keys and rate limits
-- applied when tasks are claimed (docs/flow-control.md).

-- priority: 0..9, 5 normal; the job's messages carry it (higher first).
-- held: why a job has not started yet: 'start_time' (not_before is ahead) or
-- 'job_slot' (its type already runs max_running jobs); NULL once started.
-- max_running: the limit of its type when it was created (NULL: none).
-- flow_limited: some stage has concurrency keys or a rate limit, so claims of
-- its tasks take the limited path of claim_tasks (the others never pay for it).
ALTER TABLE coremachine.jobs
    ADD COLUMN priority smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    ADD COLUMN not_before timestamptz,
    ADD COLUMN held text CHECK (held IN ('start_time', 'job_slot')),
    ADD COLUMN max_running integer CHECK (max_running >= 1),
    ADD COLUMN flow_limited boolean NOT NULL DEFAULT false;
-- Running jobs of a type (counted against max_running), and those waiting for
-- a slot in creation order.
CREATE INDEX jobs_running_by_type_idx ON coremachine.jobs (job_type)
    WHERE status IN ('queued', 'processing') AND held IS NULL;
CREATE INDEX jobs_waiting_for_slot_idx ON coremachine.jobs (job_type, created_at)
    WHERE held = 'job_slot';

-- Messages keep their job's priority through the outbox too.
ALTER TABLE coremachine.outbox
    ADD COLUMN priority smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9);

-- One row per job type with a running limit: locked by whoever starts or ends
-- such a job, so that two replicas cannot both take the last slot.
CREATE TABLE coremachine.job_type_slots (
    job_type text PRIMARY KEY
);

-- A stage's concurrency keys (computed from the job's parameters when the
-- stage is planned, e.g. 'tenant:acme') with the limit declared for each, and
-- the named rate limit its task starts count against.
ALTER TABLE coremachine.job_stages
    ADD COLUMN concurrency_keys text[] NOT NULL DEFAULT '{}',
    ADD COLUMN concurrency_limits integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN rate_limit text,
    ADD CONSTRAINT job_stages_limits_match
        CHECK (cardinality(concurrency_keys) = cardinality(concurrency_limits));

-- slot_keys: the keys a running attempt holds (set by the claim), shown to
-- operators; what is counted is running_slots below. A claim refused for a limit holds the task here instead of in any queue:
-- held_for says what it waits for ('key:<key>' or 'rate:<name>'), held_at its
-- place in line; released_at is set when its message was sent again (it is on
-- its way to a worker), release_at when that message is scheduled (a rate
-- limit's slot).
ALTER TABLE coremachine.tasks
    ADD COLUMN slot_keys text[],
    ADD COLUMN held_for text,
    ADD COLUMN held_at timestamptz,
    ADD COLUMN released_at timestamptz,
    ADD COLUMN release_at timestamptz;
CREATE INDEX tasks_held_idx ON coremachine.tasks (held_for, held_at)
    WHERE held_for IS NOT NULL;
CREATE INDEX tasks_held_of_job_idx ON coremachine.tasks (job_id)
    WHERE held_for IS NOT NULL;

-- One row per concurrency key ever claimed: the lock that serializes the
-- claims (and releases) of that key across every state replica.
CREATE TABLE coremachine.concurrency_keys (
    key         text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A slot of a key taken by a claim. Only rows whose task is still
-- 'processing' count: whoever counts a key (holding its lock) first deletes
-- the rows of tasks that left 'processing' by any way (outcome, release,
-- cancel, lease expiry), so no path can leak a slot, and the count reads
-- about `limit` rows (a btree, whose dead entries index scans skip; a GIN
-- index on the tasks would have rechecked every finished task until vacuum).
CREATE TABLE coremachine.running_slots (
    key      text NOT NULL,
    task_id  text NOT NULL,
    PRIMARY KEY (key, task_id)
);
ALTER TABLE coremachine.running_slots SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000
);

-- Token buckets, global across workers: at most per_second task starts per
-- second with bursts up to `burst`. tokens as of refilled_at; tail_at is the
-- last start time handed to a held task (held tasks come back one slot apart,
-- and tasks that were not held wait behind them).
CREATE TABLE coremachine.rate_limits (
    name         text PRIMARY KEY,
    per_second   double precision NOT NULL CHECK (per_second > 0),
    burst        integer NOT NULL CHECK (burst >= 1),
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL DEFAULT now(),
    tail_at      timestamptz NOT NULL DEFAULT '-infinity',
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Tasks running with a key (the caller holds the key's lock): the slots of
-- tasks no longer processing are dropped first, then the rest counted.
CREATE FUNCTION coremachine.running_with_key(k text)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM coremachine.running_slots rs
    WHERE rs.key = k
      AND NOT EXISTS (SELECT 1 FROM coremachine.tasks t
                      WHERE t.task_id = rs.task_id AND t.status = 'processing');
    SELECT count(*) INTO n FROM coremachine.running_slots rs WHERE rs.key = k;
    RETURN n;
END;
$$;

-- A claim candidate as the limited path of claim_tasks sees it.
CREATE TYPE coremachine.claim_candidate AS (
    task_id      text,
    job_id       text,
    job_type     text,
    task_type    text,
    stage        integer,
    task_index   integer,
    attempt      integer,
    queue        text,
    priority     smallint,
    held_for     text,
    held_at      timestamptz,
    released_at  timestamptz,
    keys         text[],
    limits       integer[],
    rate_limit   text
);

-- Claims: jobs locked first (key order), as before. A batch whose jobs have no
-- flow limits takes the path of migration 0007 unchanged; otherwise the
-- limited path decides task by task. Granted rows have held_for NULL; a row
-- with held_for is a task held instead (release_at: a rate limit's slot, at
-- which the caller sends its message again).
DROP FUNCTION coremachine.claim_tasks(text, integer, jsonb);
CREATE FUNCTION coremachine.claim_tasks(worker_id text, lease_seconds integer, claims jsonb)
RETURNS TABLE (
    task_id text, job_id text, job_type text, task_type text, stage integer,
    task_index integer, attempt integer, parameters_json text, lease_token text,
    queue text, task_timeout_ms integer, heartbeat_timeout_ms integer,
    previous_results boolean, held_for text, release_at timestamptz, priority smallint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    limited boolean;
BEGIN
    SELECT coalesce(bool_or(l.flow_limited), false) INTO limited
    FROM (SELECT j.flow_limited FROM coremachine.jobs j
          WHERE j.job_id IN (SELECT t.job_id FROM coremachine.tasks t
                             WHERE t.task_id IN (SELECT c.task_id
                                                 FROM jsonb_to_recordset(claims) AS c(task_id text)))
          ORDER BY j.job_id
          FOR UPDATE) l;

    IF limited THEN
        RETURN QUERY SELECT * FROM coremachine.claim_limited_tasks(
            claim_tasks.worker_id, claim_tasks.lease_seconds, claims);
        RETURN;
    END IF;

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
           c.heartbeat_timeout_ms, c.previous_results, NULL::text, NULL::timestamptz,
           NULL::smallint
    FROM claimed c CROSS JOIN logged;
END;
$$;

-- The limited path (the caller holds the jobs' locks). Per batch: the keys'
-- rows and then the rate limits' rows are locked in key order (after the jobs,
-- as everywhere), counts taken once, then each candidate in line order:
-- tasks sent again after a hold first (oldest hold first), then the others
-- by priority. A key admits a task while fewer than its limit run or are on
-- their way; a task that was not held waits behind those that are (FIFO per
-- key). A rate limit admits a task while its bucket holds a token and nobody
-- is scheduled ahead of it; otherwise the task gets the next free start time.
CREATE FUNCTION coremachine.claim_limited_tasks(
    worker_id text, lease_seconds integer, claims jsonb)
RETURNS TABLE (
    task_id text, job_id text, job_type text, task_type text, stage integer,
    task_index integer, attempt integer, parameters_json text, lease_token text,
    queue text, task_timeout_ms integer, heartbeat_timeout_ms integer,
    previous_results boolean, held_for text, release_at timestamptz, priority smallint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    cands coremachine.claim_candidate[];
    c coremachine.claim_candidate;
    cand_ids text[];
    at timestamptz;
    key_names text[];
    key_busy integer[] := '{}';
    key_waiting boolean[] := '{}';
    rl_names text[];
    rl_rate double precision[];
    rl_tokens double precision[];
    rl_tail timestamptz[];
    granted text[] := '{}';
    h_ids text[] := '{}';
    h_for text[] := '{}';
    h_sent timestamptz[] := '{}';
    h_at timestamptz[] := '{}';
    kept_ids text[] := '{}';
    new_slot_keys text[] := '{}';
    new_slot_tasks text[] := '{}';
    i integer;
    k integer;
    r integer;
    n integer;
    hold text;
    resent boolean;
    slot timestamptz;
BEGIN
    SELECT coalesce(array_agg(q.x ORDER BY q.waiting, q.in_line, q.held_at, q.priority DESC,
                                           q.job_id, q.task_index), '{}')
    INTO cands
    FROM (SELECT DISTINCT ON (t.task_id)
                 ROW(t.task_id, t.job_id, t.job_type, t.task_type, t.stage, t.task_index,
                     t.attempt, coalesce(s.queue, ''), j.priority, t.held_for, t.held_at,
                     t.released_at, s.concurrency_keys, s.concurrency_limits,
                     s.rate_limit)::coremachine.claim_candidate AS x,
                 -- Sent again after a hold first, then those that still wait, then the rest.
                 t.released_at IS NULL AS waiting, t.held_at IS NULL AS in_line, t.held_at,
                 j.priority, t.job_id, t.task_index
          FROM jsonb_to_recordset(claims) AS cl(task_id text, attempt int)
          JOIN coremachine.tasks t
            ON t.task_id = cl.task_id AND t.attempt = cl.attempt AND t.status = 'queued'
          JOIN coremachine.job_stages s ON s.job_id = t.job_id AND s.stage = t.stage
          JOIN coremachine.jobs j ON j.job_id = t.job_id
          ORDER BY t.task_id) q;
    IF cardinality(cands) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(x.task_id) INTO cand_ids FROM unnest(cands) x;
    SELECT coalesce(array_agg(DISTINCT kk ORDER BY kk), '{}') INTO key_names
    FROM unnest(cands) x, unnest(x.keys) kk;

    IF cardinality(key_names) > 0 THEN
        INSERT INTO coremachine.concurrency_keys (key)
        SELECT kk FROM unnest(key_names) kk ON CONFLICT DO NOTHING;
        PERFORM 1 FROM coremachine.concurrency_keys ck
        WHERE ck.key = ANY(key_names) ORDER BY ck.key FOR UPDATE;
    END IF;
    SELECT coalesce(array_agg(rl.name ORDER BY rl.name), '{}') INTO rl_names
    FROM (SELECT rl.name FROM coremachine.rate_limits rl
          WHERE rl.name IN (SELECT x.rate_limit FROM unnest(cands) x)
          ORDER BY rl.name
          FOR UPDATE) rl;
    -- Taken after the locks: what the previous holder committed is counted,
    -- and bucket time never runs behind a start it recorded.
    at := clock_timestamp();

    FOR i IN 1 .. cardinality(key_names) LOOP
        key_busy[i] := coremachine.running_with_key(key_names[i]);
        SELECT count(*) INTO n FROM coremachine.tasks t
        WHERE t.held_for = 'key:' || key_names[i] AND t.status = 'queued'
          AND t.released_at IS NOT NULL AND t.task_id <> ALL(cand_ids);
        key_busy[i] := key_busy[i] + n;
        key_waiting[i] := EXISTS (
            SELECT 1 FROM coremachine.tasks t
            WHERE t.held_for = 'key:' || key_names[i] AND t.status = 'queued'
              AND t.released_at IS NULL AND t.task_id <> ALL(cand_ids));
    END LOOP;
    SELECT array_agg(rl.per_second ORDER BY rl.name),
           array_agg(least(rl.burst::double precision,
                           rl.tokens + greatest(0, extract(epoch FROM at - rl.refilled_at))
                                       * rl.per_second) ORDER BY rl.name),
           array_agg(rl.tail_at ORDER BY rl.name)
    INTO rl_rate, rl_tokens, rl_tail
    FROM coremachine.rate_limits rl WHERE rl.name = ANY(rl_names);

    FOREACH c IN ARRAY cands LOOP
        IF c.held_for IS NOT NULL AND c.released_at IS NULL THEN
            -- Another delivery of a task that waits: it keeps its place.
            kept_ids := kept_ids || c.task_id;
            k := array_position(key_names, substr(c.held_for, 5));
            IF c.held_for LIKE 'key:%' AND k IS NOT NULL THEN
                key_waiting[k] := true;
            END IF;
            CONTINUE;
        END IF;
        resent := c.held_for IS NOT NULL;
        hold := NULL;
        FOR i IN 1 .. coalesce(cardinality(c.keys), 0) LOOP
            k := array_position(key_names, c.keys[i]);
            IF key_busy[k] >= c.limits[i] OR (key_waiting[k] AND NOT resent) THEN
                hold := 'key:' || c.keys[i];
                key_waiting[k] := true;
                EXIT;
            END IF;
        END LOOP;
        IF hold IS NOT NULL THEN
            h_ids := h_ids || c.task_id;
            h_for := h_for || hold;
            h_sent := h_sent || NULL::timestamptz;
            h_at := h_at || NULL::timestamptz;
            CONTINUE;
        END IF;
        r := array_position(rl_names, c.rate_limit);
        IF r IS NOT NULL THEN
            IF (rl_tail[r] <= at OR c.held_for = 'rate:' || c.rate_limit)
               AND rl_tokens[r] >= 0.999999 THEN
                rl_tokens[r] := rl_tokens[r] - 1;
            ELSE
                slot := greatest(rl_tail[r] + make_interval(secs => 1 / rl_rate[r]),
                                 at + make_interval(secs => greatest(0, 1 - rl_tokens[r])
                                                           / rl_rate[r]));
                rl_tail[r] := slot;
                h_ids := h_ids || c.task_id;
                h_for := h_for || ('rate:' || c.rate_limit);
                h_sent := h_sent || at;
                h_at := h_at || slot;
                CONTINUE;
            END IF;
        END IF;
        FOR i IN 1 .. coalesce(cardinality(c.keys), 0) LOOP
            k := array_position(key_names, c.keys[i]);
            key_busy[k] := key_busy[k] + 1;
            new_slot_keys := new_slot_keys || c.keys[i];
            new_slot_tasks := new_slot_tasks || c.task_id;
        END LOOP;
        granted := granted || c.task_id;
    END LOOP;

    IF cardinality(rl_names) > 0 THEN
        UPDATE coremachine.rate_limits rl
        SET tokens = u.tokens, refilled_at = at, tail_at = u.tail, updated_at = now()
        FROM unnest(rl_names, rl_tokens, rl_tail) AS u(name, tokens, tail)
        WHERE rl.name = u.name;
    END IF;
    IF cardinality(h_ids) > 0 THEN
        UPDATE coremachine.tasks t
        SET held_for = h.held_for, held_at = coalesce(t.held_at, at),
            released_at = h.sent_at, release_at = h.release_at, updated_at = now()
        FROM unnest(h_ids, h_for, h_sent, h_at) AS h(task_id, held_for, sent_at, release_at)
        WHERE t.task_id = h.task_id;
    END IF;

    INSERT INTO coremachine.running_slots (key, task_id)
    SELECT * FROM unnest(new_slot_keys, new_slot_tasks)
    ON CONFLICT DO NOTHING;

    RETURN QUERY
    WITH claimed AS (
        UPDATE coremachine.tasks t
        SET status = 'processing', lease_token = gen_random_uuid(),
            lease_owner = claim_limited_tasks.worker_id,
            lease_expires_at = at + make_interval(secs => claim_limited_tasks.lease_seconds),
            started_at = coalesce(t.started_at, at), updated_at = now(),
            slot_keys = CASE WHEN cardinality(s.concurrency_keys) > 0
                             THEN s.concurrency_keys END,
            held_for = NULL, held_at = NULL, released_at = NULL, release_at = NULL
        FROM coremachine.job_stages s
        WHERE t.task_id = ANY(granted) AND t.status = 'queued'
          AND s.job_id = t.job_id AND s.stage = t.stage
        RETURNING t.task_id, t.job_id, t.job_type, t.task_type, t.stage, t.task_index,
                  t.attempt, t.parameters::text AS parameters_json,
                  t.lease_token::text AS lease_token, coalesce(s.queue, '') AS queue,
                  s.task_timeout_ms, s.heartbeat_timeout_ms, s.previous_results
    ), logged AS (
        SELECT coremachine.append_events(
                   coalesce(jsonb_agg(jsonb_build_object(
                       'job_id', g.job_id, 'event_type', 'task_started', 'stage', g.stage,
                       'task_id', g.task_id,
                       'data', jsonb_build_object('attempt', g.attempt, 'worker_id',
                                                  claim_limited_tasks.worker_id,
                                                  'queue', g.queue))
                       ORDER BY g.job_id, g.task_index), '[]'),
                   '{}') AS jobs
        FROM claimed g
    )
    SELECT g.task_id, g.job_id, g.job_type, g.task_type, g.stage, g.task_index, g.attempt,
           g.parameters_json, g.lease_token, g.queue, g.task_timeout_ms,
           g.heartbeat_timeout_ms, g.previous_results, NULL::text, NULL::timestamptz,
           NULL::smallint
    FROM claimed g CROSS JOIN logged
    UNION ALL
    SELECT x.task_id, x.job_id, x.job_type, x.task_type, x.stage, x.task_index, x.attempt,
           NULL, NULL, x.queue, 0, 0, false,
           coalesce(h.held_for, x.held_for), h.release_at, x.priority
    FROM unnest(cands) x
    LEFT JOIN unnest(h_ids, h_for, h_at) AS h(task_id, held_for, release_at)
           ON h.task_id = x.task_id
    WHERE x.task_id = ANY(h_ids) OR x.task_id = ANY(kept_ids);
END;
$$;

-- Sends held tasks on when their keys have room (the caller holds the locks
-- of the jobs whose tasks just left 'processing'): per key, oldest hold
-- first, as many as the limit leaves room for, counting those already on
-- their way. Held tasks of other jobs are taken with SKIP LOCKED, never
-- waited for; one skipped is picked up by the next release or the janitor.
-- Returns what the caller sends a task message for.
CREATE FUNCTION coremachine.release_held(keys text[])
RETURNS TABLE (task_id text, job_id text, task_type text, attempt integer, queue text,
               priority smallint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    key_names text[];
    kk text;
    busy integer;
    n integer;
    lim integer;
    picked text[];
    released text[] := '{}';
BEGIN
    SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') INTO key_names FROM unnest(keys) x;
    PERFORM 1 FROM coremachine.concurrency_keys ck
    WHERE ck.key = ANY(key_names) ORDER BY ck.key FOR UPDATE;
    FOREACH kk IN ARRAY key_names LOOP
        SELECT s.concurrency_limits[array_position(s.concurrency_keys, kk)] INTO lim
        FROM coremachine.tasks t
        JOIN coremachine.job_stages s ON s.job_id = t.job_id AND s.stage = t.stage
        WHERE t.held_for = 'key:' || kk AND t.status = 'queued' AND t.released_at IS NULL
        ORDER BY t.held_at, t.task_id LIMIT 1;
        CONTINUE WHEN lim IS NULL;  -- nobody waits for this key
        busy := coremachine.running_with_key(kk);
        SELECT count(*) INTO n FROM coremachine.tasks t
        WHERE t.held_for = 'key:' || kk AND t.status = 'queued' AND t.released_at IS NOT NULL;
        busy := busy + n;
        CONTINUE WHEN busy >= lim;
        SELECT coalesce(array_agg(w.task_id), '{}') INTO picked
        FROM (SELECT t.task_id FROM coremachine.tasks t
              WHERE t.held_for = 'key:' || kk AND t.status = 'queued' AND t.released_at IS NULL
              ORDER BY t.held_at, t.task_id
              LIMIT lim - busy
              FOR UPDATE SKIP LOCKED) w;
        released := released || picked;
    END LOOP;
    RETURN QUERY
    UPDATE coremachine.tasks t
    SET released_at = clock_timestamp(), updated_at = now()
    FROM coremachine.job_stages s, coremachine.jobs j
    WHERE t.task_id = ANY(released) AND s.job_id = t.job_id AND s.stage = t.stage
      AND j.job_id = t.job_id
    RETURNING t.task_id, t.job_id, t.task_type, t.attempt, coalesce(s.queue, ''), j.priority;
END;
$$;
