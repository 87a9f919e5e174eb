-- Named queries of the state service. Lock order, everywhere: jobs row, then
-- job_stages rows, then tasks rows (ordered by key), so batches never deadlock.

-- name: insert_job
-- A job created with its first stage's tasks starts out processing stage 1.
INSERT INTO coremachine.jobs
    (job_id, job_type, parameters, total_stages, metadata, default_result, status, definition,
     trace_context, priority, not_before, max_running, flow_limited)
VALUES (%(job_id)s, %(job_type)s, %(parameters)s, %(total_stages)s, %(metadata)s,
        %(default_result)s,
        CASE WHEN %(processing)s THEN 'processing' ELSE 'queued' END::coremachine.job_status,
        %(definition)s, %(trace_context)s, %(priority)s, %(not_before)s, %(max_running)s,
        %(flow_limited)s)
ON CONFLICT (job_id) DO NOTHING
RETURNING *;

-- name: get_job
SELECT * FROM coremachine.jobs WHERE job_id = %(job_id)s;

-- name: lock_job
SELECT * FROM coremachine.jobs WHERE job_id = %(job_id)s FOR UPDATE;

-- name: lock_jobs_of_tasks
-- The jobs of a batch of tasks, locked in key order (the first lock taken).
SELECT * FROM coremachine.jobs
WHERE job_id IN (SELECT t.job_id FROM coremachine.tasks t
                 WHERE t.task_id IN (SELECT jsonb_array_elements_text(%(task_ids)s::jsonb)))
ORDER BY job_id
FOR UPDATE;

-- name: lock_jobs
SELECT job_id FROM coremachine.jobs WHERE job_id = ANY(%(job_ids)s::text[])
ORDER BY job_id FOR UPDATE;

-- name: list_jobs
SELECT * FROM coremachine.jobs
WHERE (%(status)s::coremachine.job_status IS NULL OR status = %(status)s)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s)
  AND (%(after_created)s::timestamptz IS NULL
       OR (created_at, job_id) < (%(after_created)s, %(after_job_id)s))
ORDER BY created_at DESC, job_id DESC
LIMIT %(limit)s;

-- name: job_stages
SELECT * FROM coremachine.job_stages WHERE job_id = %(job_id)s ORDER BY stage;

-- name: job_stages_of
SELECT * FROM coremachine.job_stages WHERE job_id = ANY(%(job_ids)s::text[]) ORDER BY job_id, stage;

-- name: insert_stage
INSERT INTO coremachine.job_stages
    (job_id, stage, task_count, remaining, max_attempts, backoff_base_ms, backoff_max_ms,
     max_failed_tasks, queue, task_timeout_ms, heartbeat_timeout_ms, previous_results,
     concurrency_keys, concurrency_limits, rate_limit)
VALUES (%(job_id)s, %(stage)s, %(task_count)s, %(task_count)s, %(max_attempts)s,
        %(backoff_base_ms)s, %(backoff_max_ms)s, %(max_failed_tasks)s, %(queue)s,
        %(task_timeout_ms)s, %(heartbeat_timeout_ms)s, %(previous_results)s,
        %(concurrency_keys)s, %(concurrency_limits)s, %(rate_limit)s)
ON CONFLICT (job_id, stage) DO NOTHING
RETURNING *;

-- name: start_job_stage
UPDATE coremachine.jobs
SET status = 'processing', stage = %(stage)s, updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')
RETURNING *;

-- name: insert_tasks
INSERT INTO coremachine.tasks
    (task_id, job_id, job_type, task_type, stage, task_index, parameters)
SELECT t.task_id, %(job_id)s, %(job_type)s, t.task_type, %(stage)s, t.task_index, t.parameters
FROM jsonb_to_recordset(%(tasks)s::jsonb)
     AS t(task_id text, task_type text, task_index int, parameters jsonb)
ON CONFLICT (task_id) DO NOTHING
RETURNING task_id, task_type, attempt;

-- name: claim_tasks
-- One statement, its own transaction: see coremachine.claim_tasks (migrations 0006, 0007,
-- 0010: flow limits).
SELECT * FROM coremachine.claim_tasks(%(worker_id)s, %(lease_seconds)s, %(claims)s::jsonb);

-- name: task_states
SELECT task_id, status, attempt FROM coremachine.tasks WHERE task_id = ANY(%(task_ids)s::text[]);

-- name: settle_succeeded
-- Compare-and-set on the lease token: a stale attempt, a duplicate delivery
-- or a task cancelled meanwhile changes nothing.
UPDATE coremachine.tasks t
SET status = 'completed', result_data = o.result, error_details = NULL,
    lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
    completed_at = now(), updated_at = now(), trace_context = coalesce(o.trace, t.trace_context)
FROM jsonb_to_recordset(%(outcomes)s::jsonb)
     AS o(task_id text, token uuid, result jsonb, trace text)
WHERE t.task_id = o.task_id AND t.lease_token = o.token AND t.status = 'processing'
RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.attempt;

-- name: settle_failed
-- A retryable failure with attempts left goes back to 'queued' with the next
-- attempt number; anything else fails the task for good.
UPDATE coremachine.tasks t
SET status = CASE WHEN o.retryable AND t.attempt - t.attempt_base < s.max_attempts
                  THEN 'queued'::coremachine.task_status
                  ELSE 'failed'::coremachine.task_status END,
    attempt = CASE WHEN o.retryable AND t.attempt - t.attempt_base < s.max_attempts
                   THEN t.attempt + 1 ELSE t.attempt END,
    error_details = o.error,
    lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
    completed_at = CASE WHEN o.retryable AND t.attempt - t.attempt_base < s.max_attempts
                        THEN NULL ELSE now() END,
    updated_at = now(), trace_context = coalesce(o.trace, t.trace_context)
FROM jsonb_to_recordset(%(outcomes)s::jsonb)
     AS o(task_id text, token uuid, error text, retryable bool, trace text),
     coremachine.job_stages s
WHERE t.task_id = o.task_id AND t.lease_token = o.token AND t.status = 'processing'
  AND s.job_id = t.job_id AND s.stage = t.stage
RETURNING t.task_id, t.job_id, t.task_type, t.stage, t.task_index, t.status, t.attempt,
          t.error_details, s.backoff_base_ms, s.backoff_max_ms, s.queue, o.trace;

-- name: count_into_stages
-- The O(1) barrier: one UPDATE per (job, stage) touched by the batch.
UPDATE coremachine.job_stages s
SET remaining = s.remaining - d.done,
    completed = s.completed + d.completed,
    failed = s.failed + d.failed,
    last_counted_at = now()
FROM unnest(%(job_ids)s::text[], %(stages)s::int[], %(done)s::int[], %(completed)s::int[],
            %(failed)s::int[]) AS d(job_id, stage, done, completed, failed)
WHERE s.job_id = d.job_id AND s.stage = d.stage
RETURNING s.*;

-- name: lock_stages
SELECT * FROM coremachine.job_stages
WHERE (job_id, stage) IN (SELECT * FROM unnest(%(job_ids)s::text[], %(stages)s::int[]))
ORDER BY job_id, stage FOR UPDATE;

-- name: count_stage_tasks
-- The repair path (janitor, redrive): a stage counted from its task rows.
SELECT status::text, count(*) FROM coremachine.tasks
WHERE job_id = %(job_id)s AND stage = %(stage)s GROUP BY status;

-- name: recount_stage
UPDATE coremachine.job_stages
SET remaining = %(remaining)s, completed = %(completed)s, failed = %(failed)s,
    cancelled = %(cancelled)s
WHERE job_id = %(job_id)s AND stage = %(stage)s
RETURNING *;

-- name: first_failed_task
SELECT task_id, attempt, error_details FROM coremachine.tasks
WHERE job_id = %(job_id)s AND stage = %(stage)s AND status = 'failed'
ORDER BY task_index LIMIT 1;

-- name: finish_stage
-- The status CAS makes advancing idempotent (janitor re-evaluation, replays);
-- the job's current stage and stage summary move in the same statement.
WITH finished AS (
    UPDATE coremachine.job_stages
    SET status = %(status)s, completed_at = now()
    WHERE job_id = %(job_id)s AND stage = %(stage)s AND status = 'running'
    RETURNING stage
)
UPDATE coremachine.jobs
SET stage_results = stage_results || jsonb_build_object(%(stage)s::text, %(summary)s::jsonb),
    stage = CASE WHEN %(next_stage)s::int IS NULL THEN stage ELSE %(next_stage)s END,
    updated_at = now()
WHERE job_id = %(job_id)s AND EXISTS (SELECT 1 FROM finished)
RETURNING job_id;

-- name: complete_job
UPDATE coremachine.jobs j
SET status = CASE WHEN EXISTS (SELECT 1 FROM coremachine.job_stages s
                               WHERE s.job_id = j.job_id AND s.failed > 0)
                  THEN 'completed_with_errors'::coremachine.job_status
                  ELSE 'completed'::coremachine.job_status END,
    result_data = %(result)s, completed_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status = 'processing'
  AND EXISTS (SELECT 1 FROM coremachine.job_stages s
              WHERE s.job_id = j.job_id AND s.stage = j.total_stages AND s.status <> 'running')
RETURNING *;

-- name: failed_tasks_of_job
-- For the default summary: the tasks that failed for good, in stage and index order.
SELECT task_id, stage, task_index, coalesce(error_details, '') AS error
FROM coremachine.tasks
WHERE job_id = %(job_id)s AND status = 'failed'
ORDER BY stage, task_index;

-- name: fail_job
UPDATE coremachine.jobs
SET status = 'failed', error_details = %(error)s, completed_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')
RETURNING *;

-- name: fail_running_stages
UPDATE coremachine.job_stages SET status = 'failed', completed_at = now()
WHERE job_id = %(job_id)s AND status = 'running';

-- name: cancel_unfinished_tasks
UPDATE coremachine.tasks
SET status = 'cancelled', lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
    held_for = NULL, held_at = NULL, released_at = NULL, release_at = NULL,
    completed_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')
RETURNING stage;

-- name: count_cancelled
UPDATE coremachine.job_stages s
SET cancelled = s.cancelled + d.n, remaining = greatest(s.remaining - d.n, 0)
FROM unnest(%(stages)s::int[], %(counts)s::int[]) AS d(stage, n)
WHERE s.job_id = %(job_id)s AND s.stage = d.stage;

-- name: renew_leases
UPDATE coremachine.tasks t
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s), updated_at = now()
FROM jsonb_to_recordset(%(leases)s::jsonb) AS l(task_id text, token uuid)
WHERE t.task_id = l.task_id AND t.lease_token = l.token AND t.status = 'processing'
RETURNING t.task_id;

-- name: release_tasks
-- A worker shutting down hands its unfinished tasks back, same attempt.
UPDATE coremachine.tasks t
SET status = 'queued', lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
    updated_at = now()
FROM jsonb_to_recordset(%(leases)s::jsonb) AS l(task_id text, token uuid)
WHERE t.task_id = l.task_id AND t.lease_token = l.token AND t.status = 'processing'
RETURNING t.task_id, t.job_id, t.task_type, t.attempt;

-- name: stage_results
SELECT task_index, task_id, status::text, result_data::text, error_details
FROM coremachine.tasks
WHERE job_id = %(job_id)s AND stage = %(stage)s AND task_index > %(after)s
ORDER BY task_index
LIMIT %(limit)s;

-- name: list_tasks
SELECT t.*, s.max_attempts
FROM coremachine.tasks t
JOIN coremachine.job_stages s ON s.job_id = t.job_id AND s.stage = t.stage
WHERE (%(job_id)s::text IS NULL OR t.job_id = %(job_id)s)
  AND (%(stage)s::int IS NULL OR t.stage = %(stage)s)
  AND (%(status)s::coremachine.task_status IS NULL OR t.status = %(status)s)
  AND (%(after_task_id)s::text IS NULL
       OR (t.job_id, t.stage, t.task_index) > (%(after_job_id)s, %(after_stage)s, %(after_index)s))
ORDER BY t.job_id, t.stage, t.task_index
LIMIT %(limit)s;

-- name: insert_outbox
INSERT INTO coremachine.outbox (queue, message_id, body, properties, scheduled_at, priority)
SELECT * FROM unnest(%(queues)s::text[], %(message_ids)s::text[], %(bodies)s::bytea[],
                     %(properties)s::jsonb[], %(scheduled)s::timestamptz[],
                     %(priorities)s::smallint[]);

-- name: lock_outbox_batch
SELECT id, queue, message_id, body, properties, scheduled_at, priority
FROM coremachine.outbox ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- name: delete_outbox
DELETE FROM coremachine.outbox WHERE id = ANY(%(ids)s::bigint[]);

-- name: append_events
-- See coremachine.append_events (migrations 0006, 0012): numbered per job, one row
-- per job and transaction, NOTIFY at commit.
SELECT coremachine.append_events(%(events)s::jsonb, %(end_events)s);

-- name: acquire_lease
-- Single-leader election: take the lease if free or expired, or renew it.
INSERT INTO coremachine.leases (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE coremachine.leases.holder = EXCLUDED.holder OR coremachine.leases.expires_at < now()
RETURNING holder;

-- name: stage_task_traces
-- The trace contexts of a stage's tasks (their last reported attempts), for
-- the links of the stage advancement's span; read only when tracing is on.
SELECT trace_context FROM coremachine.tasks
WHERE job_id = %(job_id)s AND stage = %(stage)s AND trace_context IS NOT NULL
ORDER BY task_index
LIMIT %(limit)s;

-- name: expired_leases
SELECT task_id, lease_token FROM coremachine.tasks
WHERE status = 'processing' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: stalled_stages
-- Running stages, quiet for a while (no outcome counted), whose tasks all
-- exist and are all terminal: their advancement was lost (or is racing;
-- advance_stage is a CAS). The quiet filter comes first, so a stage that is
-- making progress costs nothing here whatever its size.
SELECT s.job_id, s.stage FROM coremachine.job_stages s
WHERE s.status = 'running'
  AND coalesce(s.last_counted_at, s.started_at) < now() - make_interval(secs => %(stall_seconds)s)
  AND NOT EXISTS (SELECT 1 FROM coremachine.tasks t
                  WHERE t.job_id = s.job_id AND t.stage = s.stage
                    AND t.status IN ('queued', 'processing'))
  AND (SELECT count(*) FROM coremachine.tasks t
       WHERE t.job_id = s.job_id AND t.stage = s.stage) = s.task_count
LIMIT %(limit)s;

-- name: quiet_stages_with_queued_tasks
-- Running stages of running jobs where nothing was counted for a while but
-- some task still waits in the queue: maybe its message was lost.
SELECT s.job_id, s.stage, s.queue FROM coremachine.job_stages s
JOIN coremachine.jobs j ON j.job_id = s.job_id AND j.status = 'processing'
WHERE s.status = 'running'
  AND coalesce(s.last_counted_at, s.started_at) < now() - make_interval(secs => %(quiet_seconds)s)
  AND EXISTS (SELECT 1 FROM coremachine.tasks t
              WHERE t.job_id = s.job_id AND t.stage = s.stage AND t.status = 'queued')
LIMIT %(limit)s;

-- name: waiting_tasks_of_stage
-- Its tasks queued for a while, not re-sent recently.
SELECT task_id, task_type, attempt,
       now() - greatest(updated_at, coalesce(resent_at, '-infinity')) AS waited
FROM coremachine.tasks
WHERE job_id = %(job_id)s AND stage = %(stage)s AND status = 'queued'
  AND updated_at < now() - make_interval(secs => %(quiet_seconds)s)
  AND (resent_at IS NULL OR resent_at < now() - make_interval(secs => %(resend_every)s))
ORDER BY task_index
LIMIT %(limit)s;

-- name: outbox_message_ids
-- Messages written but not yet relayed are not lost.
SELECT message_id FROM coremachine.outbox WHERE message_id = ANY(%(message_ids)s::text[]);

-- name: mark_resent
UPDATE coremachine.tasks SET resent_at = now()
WHERE task_id = ANY(%(task_ids)s::text[]) AND status = 'queued'
RETURNING task_id;

-- name: overdue_jobs
SELECT job_id FROM coremachine.jobs
WHERE status IN ('queued', 'processing')
  AND created_at < now() - make_interval(secs => %(deadline_seconds)s)
LIMIT %(limit)s;

-- name: start_janitor_run
INSERT INTO coremachine.janitor_runs (holder) VALUES (%(holder)s) RETURNING run_id;

-- name: finish_janitor_run
UPDATE coremachine.janitor_runs
SET finished_at = now(), actions = %(actions)s, error = %(error)s
WHERE run_id = %(run_id)s;

-- name: cancel_job
UPDATE coremachine.jobs
SET status = 'cancelled', error_details = %(reason)s, completed_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')
RETURNING job_id;

-- name: cancel_running_stages
UPDATE coremachine.job_stages SET status = 'cancelled', completed_at = now()
WHERE job_id = %(job_id)s AND status = 'running';

-- name: first_stopped_stage
SELECT * FROM coremachine.job_stages
WHERE job_id = %(job_id)s AND status IN ('failed', 'cancelled')
ORDER BY stage LIMIT 1 FOR UPDATE;

-- name: requeue_stopped_tasks
-- Redrive: failed and cancelled tasks run again with a fresh retry budget.
UPDATE coremachine.tasks t
SET status = 'queued', attempt = t.attempt + 1, attempt_base = t.attempt,
    error_details = NULL, result_data = NULL, lease_token = NULL, lease_owner = NULL,
    lease_expires_at = NULL, completed_at = NULL, updated_at = now()
FROM coremachine.job_stages s
WHERE t.job_id = %(job_id)s AND t.stage = %(stage)s AND t.status IN ('failed', 'cancelled')
  AND s.job_id = t.job_id AND s.stage = t.stage
RETURNING t.task_id, t.task_type, t.attempt, s.queue;

-- name: reopen_stage
UPDATE coremachine.job_stages s
SET status = 'running', completed_at = NULL,
    remaining = c.queued, failed = c.failed, cancelled = c.cancelled, completed = c.completed
FROM (SELECT count(*) FILTER (WHERE status IN ('queued', 'processing')) AS queued,
             count(*) FILTER (WHERE status = 'failed') AS failed,
             count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
             count(*) FILTER (WHERE status = 'completed') AS completed
      FROM coremachine.tasks WHERE job_id = %(job_id)s AND stage = %(stage)s) c
WHERE s.job_id = %(job_id)s AND s.stage = %(stage)s
RETURNING s.*;

-- name: drop_later_stages
DELETE FROM coremachine.job_stages WHERE job_id = %(job_id)s AND stage > %(stage)s;

-- name: drop_later_tasks
DELETE FROM coremachine.tasks WHERE job_id = %(job_id)s AND stage > %(stage)s;

-- name: reopen_job
UPDATE coremachine.jobs
SET status = 'processing', stage = %(stage)s, error_details = NULL, result_data = NULL,
    completed_at = NULL, updated_at = now(),
    stage_results = (SELECT coalesce(jsonb_object_agg(key, value), '{}')
                     FROM jsonb_each(stage_results) WHERE key::int < %(stage)s)
WHERE job_id = %(job_id)s;

-- name: events_page
-- A page of a job's events with the job's status, in one statement: one
-- snapshot, so "terminal and nothing follows" is exact, and no transaction
-- for a long poll's every read. One row per event, or a single row with NULL
-- event columns when nothing (of the requested level) follows after_seq.
-- The events are read from their runs (migration 0012): the first run read
-- is the one holding after_seq + 1, and runs without an event of the
-- requested level are passed over without being unpacked.
SELECT j.status::text AS job_status,
       e.job_id, e.seq, e.event_type, e.stage, e.task_id, e.data, e.created_at
FROM coremachine.jobs j
LEFT JOIN LATERAL (
    SELECT r.job_id, r.last_seq - r.n + x.i AS seq, x.e->>'event_type' AS event_type,
           (x.e->>'stage')::integer AS stage, x.e->>'task_id' AS task_id,
           coalesce(x.e->'data', '{}') AS data, r.created_at
    FROM coremachine.job_event_runs r
    CROSS JOIN LATERAL jsonb_array_elements(r.events) WITH ORDINALITY AS x(e, i)
    WHERE r.job_id = j.job_id AND r.last_seq > %(after_seq)s
      AND (NOT %(job_level_only)s OR r.job_level)
      AND (NOT %(end_only)s OR r.event_types && %(end_events)s::text[])
      AND r.last_seq - r.n + x.i > %(after_seq)s
      AND (NOT %(job_level_only)s OR x.e->>'task_id' IS NULL)
      AND (NOT %(end_only)s OR x.e->>'event_type' = ANY(%(end_events)s))
    ORDER BY r.last_seq, x.i LIMIT %(limit)s
) e ON true
WHERE j.job_id = %(job_id)s
ORDER BY e.seq;

-- name: jobs_by_status
SELECT status::text, count(*) FROM coremachine.jobs GROUP BY status;

-- name: tasks_by_status
SELECT status::text, count(*) FROM coremachine.tasks GROUP BY status;

-- name: table_stats
SELECT relname AS table, n_live_tup AS live_rows, n_dead_tup AS dead_rows,
       seq_scan, idx_scan, n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_del AS deleted,
       last_autovacuum
FROM pg_stat_user_tables WHERE schemaname = 'coremachine' ORDER BY relname;

-- name: recent_activity
SELECT 'jobs' AS table, count(*) AS total,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour,
       count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS last_24h,
       max(created_at) AS latest
FROM coremachine.jobs
UNION ALL
SELECT 'tasks', count(*),
       count(*) FILTER (WHERE created_at > now() - interval '1 hour'),
       count(*) FILTER (WHERE created_at > now() - interval '24 hours'),
       max(created_at)
FROM coremachine.tasks;

-- name: record_progress
-- The latest report per task wins; reports of tasks no longer running under
-- that lease change nothing. The stage keeps the latest of its tasks' reports.
WITH reported AS (
    UPDATE coremachine.tasks t
    SET progress = jsonb_build_object('current', r.current, 'total', r.total,
                                      'message', r.message, 'at', now()),
        updated_at = now()
    FROM jsonb_to_recordset(%(reports)s::jsonb)
         AS r(task_id text, token uuid, current float8, total float8, message text)
    WHERE t.task_id = r.task_id AND t.lease_token = r.token AND t.status = 'processing'
    RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.progress
), latest AS (
    SELECT DISTINCT ON (job_id, stage) job_id, stage, task_id, task_index, progress
    FROM reported ORDER BY job_id, stage, task_index DESC
), staged AS (
    UPDATE coremachine.job_stages s
    SET last_progress = l.progress || jsonb_build_object('task_id', l.task_id,
                                                         'task_index', l.task_index)
    FROM latest l
    WHERE s.job_id = l.job_id AND s.stage = l.stage
)
SELECT task_id, job_id, stage, progress FROM reported;

-- name: running_stage_queues
-- Queues (worker pools) of running stages, for the queue metrics.
SELECT DISTINCT queue FROM coremachine.job_stages WHERE status = 'running' AND queue IS NOT NULL;

-- name: live_queues
-- Queues some live worker consumes.
SELECT DISTINCT unnest(queues) FROM coremachine.workers
WHERE expires_at > now() AND stopped_at IS NULL;

-- name: heartbeat_worker
INSERT INTO coremachine.workers
    (worker_id, host, queues, task_types, concurrency, in_flight, version, started_at,
     last_seen_at, expires_at, stopped_at)
VALUES (%(worker_id)s, %(host)s, %(queues)s, %(task_types)s, %(concurrency)s, %(in_flight)s,
        %(version)s, %(started_at)s, now(), now() + make_interval(secs => %(ttl_seconds)s),
        CASE WHEN %(stopping)s THEN now() END)
ON CONFLICT (worker_id) DO UPDATE
SET host = EXCLUDED.host, queues = EXCLUDED.queues, task_types = EXCLUDED.task_types,
    concurrency = EXCLUDED.concurrency, in_flight = EXCLUDED.in_flight,
    version = EXCLUDED.version, started_at = coalesce(EXCLUDED.started_at, workers.started_at),
    last_seen_at = now(), expires_at = EXCLUDED.expires_at, stopped_at = EXCLUDED.stopped_at;

-- name: list_workers
SELECT worker_id, host, queues, task_types, concurrency, in_flight, version, started_at,
       last_seen_at,
       CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
            WHEN expires_at <= now() THEN 'lost' ELSE 'live' END AS state
FROM coremachine.workers
WHERE (stopped_at IS NULL AND expires_at > now())
   OR greatest(coalesce(stopped_at, '-infinity'), expires_at)
      > now() - make_interval(secs => %(gone_seconds)s)
ORDER BY worker_id;

-- name: forget_old_workers
DELETE FROM coremachine.workers WHERE expires_at < now() - interval '1 day';

-- name: register_orchestrator
INSERT INTO coremachine.orchestrators
    (orchestrator_id, host, version, definitions, last_seen_at, expires_at)
VALUES (%(orchestrator_id)s, %(host)s, %(version)s, %(definitions)s, now(),
        now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (orchestrator_id) DO UPDATE
SET host = EXCLUDED.host, version = EXCLUDED.version, definitions = EXCLUDED.definitions,
    last_seen_at = now(), expires_at = EXCLUDED.expires_at;

-- name: unregister_orchestrator
DELETE FROM coremachine.orchestrators WHERE orchestrator_id = %(orchestrator_id)s;

-- name: record_definitions
INSERT INTO coremachine.job_definitions (job_type, fingerprint, parameters_schema, definition)
SELECT d.job_type, d.fingerprint, d.parameters_schema, d.definition
FROM jsonb_to_recordset(%(definitions)s::jsonb)
     AS d(job_type text, fingerprint text, parameters_schema jsonb, definition jsonb)
ON CONFLICT (job_type, fingerprint) DO UPDATE SET last_registered_at = now();

-- name: definition_served
-- Whether a live orchestrator serves a definition.
SELECT EXISTS (SELECT 1 FROM coremachine.orchestrators
               WHERE expires_at > now() AND %(definition)s = ANY(definitions));

-- name: release_parked_for
-- Parked messages some of these definitions serve, taken out to be sent again
-- (with their job's trace context, which the parked body does not carry, and priority).
DELETE FROM coremachine.parked_messages p
USING coremachine.jobs j
WHERE p.definition = ANY(%(definitions)s::text[]) AND j.job_id = p.job_id
RETURNING p.message_id, p.job_id, p.body, j.trace_context, j.priority;

-- name: release_parked_of_job
DELETE FROM coremachine.parked_messages p
USING coremachine.jobs j
WHERE p.job_id = %(job_id)s AND j.job_id = p.job_id
RETURNING p.message_id, p.job_id, p.body, j.trace_context, j.priority;

-- name: park_message
INSERT INTO coremachine.parked_messages (message_id, job_id, job_type, definition, body, reason)
VALUES (%(message_id)s, %(job_id)s, %(job_type)s, %(definition)s, %(body)s, %(reason)s)
ON CONFLICT (message_id) DO NOTHING;

-- name: set_job_waiting
UPDATE coremachine.jobs SET waiting = %(waiting)s, updated_at = now()
WHERE job_id = ANY(%(job_ids)s::text[]) AND waiting IS DISTINCT FROM %(waiting)s
RETURNING job_id;

-- name: rebase_job
UPDATE coremachine.jobs
SET definition = %(definition)s, total_stages = %(total_stages)s,
    default_result = %(default_result)s, waiting = NULL, updated_at = now()
WHERE job_id = %(job_id)s
RETURNING *;

-- name: live_orchestrators
SELECT EXISTS (SELECT 1 FROM coremachine.orchestrators WHERE expires_at > now());

-- name: retrying_tasks
-- Diagnosis: a stage's tasks queued for a retry (not a first attempt, nor a
-- redrive's first), with when their retry message is due: the
-- task_retrying event that scheduled the attempt says after what delay.
-- Only the job's runs that hold a task_retrying event are unpacked.
WITH retries AS (
    SELECT DISTINCT ON (x.e->>'task_id', (x.e->'data'->>'attempt')::int)
           x.e->>'task_id' AS task_id, (x.e->'data'->>'attempt')::int AS attempt,
           r.created_at
           + make_interval(secs => coalesce((x.e->'data'->>'delay_s')::float8, 0)) AS due_at
    FROM coremachine.job_event_runs r
    CROSS JOIN LATERAL jsonb_array_elements(r.events) WITH ORDINALITY AS x(e, i)
    WHERE r.job_id = %(job_id)s AND 'task_retrying' = ANY(r.event_types)
      AND x.e->>'event_type' = 'task_retrying'
    ORDER BY x.e->>'task_id', (x.e->'data'->>'attempt')::int, r.last_seq DESC, x.i DESC
)
SELECT t.task_id, t.task_index, t.attempt, t.error_details, rt.due_at
FROM coremachine.tasks t
LEFT JOIN retries rt ON rt.task_id = t.task_id AND rt.attempt = t.attempt
WHERE t.job_id = %(job_id)s AND t.stage = %(stage)s AND t.status = 'queued'
  AND t.attempt > t.attempt_base + 1
ORDER BY rt.due_at NULLS LAST, t.task_index
LIMIT %(limit)s;

-- name: running_tasks
-- Diagnosis: a job's running tasks, the earliest started first (started_at is
-- the first attempt's; `retried` says when the attempt's own start is needed).
SELECT task_id, task_index, attempt, coalesce(lease_owner, ''), started_at, lease_expires_at,
       attempt > attempt_base + 1 AS retried
FROM coremachine.tasks
WHERE job_id = %(job_id)s AND status = 'processing'
ORDER BY lease_expires_at, started_at, task_index
LIMIT %(limit)s;

-- name: attempt_starts
-- When the current attempt of these tasks started (their last task_started event).
SELECT DISTINCT ON (x.e->>'task_id') x.e->>'task_id', r.created_at
FROM coremachine.job_event_runs r
CROSS JOIN LATERAL jsonb_array_elements(r.events) WITH ORDINALITY AS x(e, i)
WHERE r.job_id = %(job_id)s AND 'task_started' = ANY(r.event_types)
  AND x.e->>'event_type' = 'task_started' AND x.e->>'task_id' = ANY(%(task_ids)s::text[])
ORDER BY x.e->>'task_id', r.last_seq DESC, x.i DESC;

-- name: last_janitor_run
SELECT holder, started_at, finished_at, actions, error FROM coremachine.janitor_runs
WHERE finished_at IS NOT NULL
ORDER BY run_id DESC LIMIT 1;

-- Flow control (migration 0010; services/state/flow.py) ----------------------

-- name: upsert_rate_limit
-- The latest declaration of a named limit sets its rate; its bucket carries on.
INSERT INTO coremachine.rate_limits (name, per_second, burst, tokens)
VALUES (%(name)s, %(per_second)s, %(burst)s, %(burst)s)
ON CONFLICT (name) DO UPDATE
SET per_second = EXCLUDED.per_second, burst = EXCLUDED.burst,
    tokens = least(coremachine.rate_limits.tokens, EXCLUDED.burst), updated_at = now()
WHERE (coremachine.rate_limits.per_second, coremachine.rate_limits.burst)
      IS DISTINCT FROM (EXCLUDED.per_second, EXCLUDED.burst);

-- name: ensure_job_type_slot
INSERT INTO coremachine.job_type_slots (job_type) VALUES (%(job_type)s) ON CONFLICT DO NOTHING;

-- name: lock_job_type_slot
-- Serializes starts and ends of a limited job type across state replicas.
SELECT job_type FROM coremachine.job_type_slots WHERE job_type = %(job_type)s FOR UPDATE;

-- name: running_jobs_of_type
SELECT count(*) FROM coremachine.jobs
WHERE job_type = %(job_type)s AND status IN ('queued', 'processing') AND held IS NULL
  AND job_id <> %(except_job_id)s;

-- name: hold_job
UPDATE coremachine.jobs SET held = %(held)s, waiting = %(waiting)s, updated_at = now()
WHERE job_id = %(job_id)s
RETURNING *;

-- name: next_jobs_waiting_for_slot
-- Oldest first; a job locked by someone else is passed over, never waited for
-- (the caller holds another job's lock: see locks.py).
SELECT job_id FROM coremachine.jobs
WHERE job_type = %(job_type)s AND held = 'job_slot' AND status = 'queued'
ORDER BY created_at, job_id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: start_held_jobs
UPDATE coremachine.jobs SET held = NULL, waiting = NULL, updated_at = now()
WHERE job_id = ANY(%(job_ids)s::text[])
RETURNING *;

-- name: held_tasks_of_job
SELECT held_for, count(*) FROM coremachine.tasks
WHERE job_id = %(job_id)s AND held_for IS NOT NULL AND status = 'queued'
GROUP BY held_for ORDER BY held_for;

-- name: keys_of_stages
SELECT DISTINCT k FROM coremachine.job_stages s, unnest(s.concurrency_keys) k
WHERE (s.job_id, s.stage) IN (SELECT * FROM unnest(%(job_ids)s::text[], %(stages)s::int[]));

-- name: keys_of_job
SELECT DISTINCT k FROM coremachine.job_stages s, unnest(s.concurrency_keys) k
WHERE s.job_id = %(job_id)s;

-- name: release_held
-- See coremachine.release_held (migration 0010).
SELECT * FROM coremachine.release_held(%(keys)s::text[]);

-- name: keys_with_waiting_tasks
-- The janitor's safety net: keys some held task waits for ('key:' prefix range).
SELECT DISTINCT substr(held_for, 5) FROM coremachine.tasks
WHERE held_for >= 'key:' AND held_for < 'key;' AND status = 'queued' AND released_at IS NULL;

-- name: resend_overdue_releases
-- Tasks sent again after a hold whose message has not led to a claim for a
-- while (lost in a crash between the claim and the send, or dead-lettered):
-- sent once more. Locked rows are passed over (their job is busy anyway).
WITH overdue AS (
    SELECT t.task_id FROM coremachine.tasks t
    WHERE t.held_for IS NOT NULL AND t.status = 'queued' AND t.released_at IS NOT NULL
      AND coalesce(t.release_at, t.released_at) < now() - make_interval(secs => %(stale_seconds)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE coremachine.tasks t
SET released_at = now(), release_at = NULL, updated_at = now()
FROM overdue o, coremachine.job_stages s, coremachine.jobs j
WHERE t.task_id = o.task_id AND s.job_id = t.job_id AND s.stage = t.stage
  AND j.job_id = t.job_id
RETURNING t.task_id, t.job_id, t.task_type, t.attempt, coalesce(s.queue, ''), j.priority;

-- Schedules (migration 0011; services/state/schedules_store.py) ----------------
-- Lock order: schedules rows, then jobs rows (a claim may cancel a previous run).

-- name: insert_schedule
INSERT INTO coremachine.schedules
    (name, job_type, parameters, priority, cron, timezone, interval_seconds, catch_up,
     catch_up_limit, grace_seconds, overlap, paused, description, anchor_at, next_fire_at)
VALUES (%(name)s, %(job_type)s, %(parameters)s, %(priority)s, %(cron)s, %(timezone)s,
        %(interval_seconds)s, %(catch_up)s, %(catch_up_limit)s, %(grace_seconds)s,
        %(overlap)s, %(paused)s, %(description)s, %(anchor_at)s, %(next_fire_at)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM coremachine.schedules WHERE name = %(name)s;

-- name: lock_schedule
SELECT * FROM coremachine.schedules WHERE name = %(name)s FOR UPDATE;

-- name: list_schedules
SELECT * FROM coremachine.schedules
WHERE (%(after)s::text IS NULL OR name > %(after)s)
ORDER BY name LIMIT %(limit)s;

-- name: set_schedule_paused
UPDATE coremachine.schedules
SET paused = %(paused)s, next_fire_at = coalesce(%(next_fire_at)s, next_fire_at),
    updated_at = now()
WHERE name = %(name)s
RETURNING *;

-- name: delete_schedule
DELETE FROM coremachine.schedules WHERE name = %(name)s RETURNING name;

-- name: lock_due_schedules
-- Each due schedule to one claimer at a time, whatever the replicas.
SELECT * FROM coremachine.schedules
WHERE NOT paused AND next_fire_at <= now() AND job_type = ANY(%(job_types)s::text[])
ORDER BY next_fire_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: advance_schedule
UPDATE coremachine.schedules SET next_fire_at = %(next_fire_at)s, updated_at = now()
WHERE name = %(name)s;

-- name: previous_run
-- The schedule's latest run that may still be going, with its job's status.
SELECT f.tick_at, f.outcome, f.job_id, j.status::text
FROM coremachine.schedule_firings f
LEFT JOIN coremachine.jobs j ON j.job_id = f.job_id
WHERE f.schedule = %(name)s AND f.outcome IN ('pending', 'submitted')
ORDER BY f.tick_at DESC LIMIT 1;

-- name: insert_firings
INSERT INTO coremachine.schedule_firings
    (schedule, tick_at, kind, outcome, job_id, detail, missed_count, missed_until, claimed_by,
     claimed_until)
SELECT f.schedule, f.tick_at, f.kind, f.outcome, f.job_id, coalesce(f.detail, ''),
       f.missed_count, f.missed_until, f.claimed_by,
       CASE WHEN f.outcome = 'pending'
            THEN now() + make_interval(secs => %(lease_seconds)s) END
FROM jsonb_to_recordset(%(firings)s::jsonb)
     AS f(schedule text, tick_at timestamptz, kind text, outcome text, job_id text,
          detail text, missed_count int, missed_until timestamptz, claimed_by text)
ON CONFLICT (schedule, tick_at) DO NOTHING
RETURNING *;

-- name: reclaim_firings
-- Firings claimed by an orchestrator that did not record them in time
-- (it stopped): handed out again (same job id, so submitting twice is one job).
WITH stale AS (
    SELECT f.schedule, f.tick_at FROM coremachine.schedule_firings f
    JOIN coremachine.schedules s ON s.name = f.schedule
    WHERE f.outcome = 'pending' AND f.claimed_until < now()
      AND s.job_type = ANY(%(job_types)s::text[])
    ORDER BY f.claimed_until
    LIMIT %(limit)s
    FOR UPDATE OF f SKIP LOCKED
)
UPDATE coremachine.schedule_firings f
SET claimed_by = %(claimed_by)s,
    claimed_until = now() + make_interval(secs => %(lease_seconds)s), updated_at = now()
FROM stale
WHERE f.schedule = stale.schedule AND f.tick_at = stale.tick_at
RETURNING f.*;

-- name: record_firing
UPDATE coremachine.schedule_firings
SET outcome = %(outcome)s, job_id = coalesce(%(job_id)s, job_id), detail = %(detail)s,
    claimed_until = NULL, updated_at = now()
WHERE schedule = %(schedule)s AND tick_at = %(tick_at)s AND outcome = 'pending'
RETURNING schedule;

-- name: list_firings
SELECT * FROM coremachine.schedule_firings WHERE schedule = %(name)s
ORDER BY tick_at DESC LIMIT %(limit)s;

-- name: next_schedule_due
SELECT min(next_fire_at) FROM coremachine.schedules
WHERE NOT paused AND job_type = ANY(%(job_types)s::text[]);

-- name: task_failures_by_error
-- A job's failed tasks grouped by error message, over at most scan_limit of them
-- (tasks_failed_idx: only failed tasks are read, never the job's other tasks).
WITH failed AS (
    SELECT t.stage, t.task_index, t.task_id, t.attempt, coalesce(t.error_details, '') AS error
    FROM coremachine.tasks t
    WHERE t.job_id = %(job_id)s AND t.status = 'failed'
    ORDER BY t.job_id, t.stage, t.task_index
    LIMIT %(scan_limit)s
)
SELECT error,
       count(*) AS tasks,
       array_agg(DISTINCT stage ORDER BY stage) AS stages,
       min(attempt) AS min_attempt,
       max(attempt) AS max_attempt,
       (array_agg(task_id ORDER BY stage, task_index))[1:%(samples)s] AS sample_task_ids,
       (array_agg(stage ORDER BY stage, task_index))[1:%(samples)s] AS sample_stages,
       (array_agg(task_index ORDER BY stage, task_index))[1:%(samples)s] AS sample_indexes,
       (array_agg(attempt ORDER BY stage, task_index))[1:%(samples)s] AS sample_attempts,
       sum(count(*)) OVER () AS scanned
FROM failed
GROUP BY error
ORDER BY count(*) DESC, error
LIMIT %(group_limit)s;
