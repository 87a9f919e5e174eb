-- Schedules: a job type and parameters fired on a cron expression (in a time
-- zone) or a fixed interval. A tick is claimed in the state service's
-- transaction (the schedule row locked, next_fire_at moved on), so that any
-- number of orchestrators and state replicas fire it once; the job's id is
-- derived from the schedule's uid and the tick (docs/flow-control.md).
CREATE TABLE coremachine.schedules (
    name                   text PRIMARY KEY,
    -- A new uid per schedule created: a schedule deleted and created again
    -- under the same name does not meet the job ids of the old one.
    uid                    uuid NOT NULL DEFAULT gen_random_uuid(),
    job_type               text NOT NULL,
    -- Validated by the orchestrator at creation (its job type's model).
    parameters             jsonb NOT NULL DEFAULT '{}',
    priority               smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    cron                   text,
    timezone               text NOT NULL DEFAULT 'UTC',
    interval_seconds       double precision CHECK (interval_seconds > 0),
    catch_up               text NOT NULL DEFAULT 'skip'
                           CHECK (catch_up IN ('skip', 'run_once', 'run_each')),
    catch_up_limit         integer NOT NULL DEFAULT 10 CHECK (catch_up_limit >= 1),
    -- How late a tick may be claimed and still count as on time.
    grace_seconds          double precision NOT NULL DEFAULT 60 CHECK (grace_seconds >= 0),
    overlap                text NOT NULL DEFAULT 'skip'
                           CHECK (overlap IN ('skip', 'allow', 'cancel_previous')),
    paused                 boolean NOT NULL DEFAULT false,
    description            text NOT NULL DEFAULT '',
    -- Interval schedules tick at anchor_at + k * interval_seconds.
    anchor_at              timestamptz NOT NULL DEFAULT now(),
    -- The first tick not yet handled.
    next_fire_at           timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);
CREATE INDEX schedules_due_idx ON coremachine.schedules (next_fire_at) WHERE NOT paused;

-- Every firing and every tick that did not fire, with why. kind: 'tick' (on
-- time), 'catch_up' (a missed tick run after downtime), 'manual' (trigger
-- now). outcome: 'pending' (claimed by an orchestrator until claimed_until),
-- 'submitted' (its job exists), 'failed' (the job could not be created),
-- 'skipped' (overlap policy), 'missed' (downtime: missed_count ticks up to
-- missed_until, not run by the catch-up policy).
CREATE TABLE coremachine.schedule_firings (
    schedule       text NOT NULL REFERENCES coremachine.schedules (name) ON DELETE CASCADE,
    tick_at        timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('tick', 'catch_up', 'manual')),
    outcome        text NOT NULL
                   CHECK (outcome IN ('pending', 'submitted', 'failed', 'skipped', 'missed')),
    job_id         text,
    detail         text NOT NULL DEFAULT '',
    missed_count   integer,
    missed_until   timestamptz,
    claimed_by     text,
    claimed_until  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, tick_at)
);
CREATE INDEX schedule_firings_pending_idx ON coremachine.schedule_firings (claimed_until)
    WHERE outcome = 'pending';
CREATE INDEX schedule_firings_job_idx ON coremachine.schedule_firings (job_id)
    WHERE job_id IS NOT NULL;
