-- Jobs, tasks, per-stage counters, the transactional outbox and job events.
CREATE SCHEMA IF NOT EXISTS coremachine;

CREATE TYPE coremachine.job_status AS ENUM (
    'queued', 'processing', 'completed', 'completed_with_errors', 'failed', 'cancelled');
CREATE TYPE coremachine.task_status AS ENUM (
    'queued', 'processing', 'completed', 'failed', 'cancelled');
CREATE TYPE coremachine.stage_status AS ENUM (
    'running', 'completed', 'completed_with_errors', 'failed', 'cancelled');

CREATE TABLE coremachine.jobs (
    job_id          text PRIMARY KEY CHECK (job_id ~ '^[0-9a-f]{64}$'),
    job_type        text NOT NULL,
    parameters      jsonb NOT NULL DEFAULT '{}',
    status          coremachine.job_status NOT NULL DEFAULT 'queued',
    stage           integer NOT NULL DEFAULT 1 CHECK (stage >= 1),
    total_stages    integer NOT NULL CHECK (total_stages >= 1),
    stage_results   jsonb NOT NULL DEFAULT '{}',
    metadata        jsonb NOT NULL DEFAULT '{}',
    result_data     jsonb,
    error_details   text,
    -- Per-job event sequence; bumped under the job row lock (see job_events).
    last_event_seq  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX jobs_status_idx ON coremachine.jobs (status);
CREATE INDEX jobs_job_type_idx ON coremachine.jobs (job_type);
CREATE INDEX jobs_created_at_idx ON coremachine.jobs (created_at DESC, job_id);

-- One row per (job, stage): the O(1) barrier. `remaining` is decremented in
-- the completion's own transaction; the update that takes it to zero is the
-- one that advances the stage (guarded again by the status CAS).
CREATE TABLE coremachine.job_stages (
    job_id            text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
    stage             integer NOT NULL CHECK (stage >= 1),
    status            coremachine.stage_status NOT NULL DEFAULT 'running',
    task_count        integer NOT NULL CHECK (task_count >= 0),
    remaining         integer NOT NULL CHECK (remaining >= 0),
    completed         integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    cancelled         integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 4 CHECK (max_attempts >= 1),
    backoff_base_ms   integer NOT NULL DEFAULT 1000,
    backoff_max_ms    integer NOT NULL DEFAULT 60000,
    -- Failed tasks tolerated before the job fails; -1 tolerates all.
    max_failed_tasks  integer NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE coremachine.tasks (
    task_id           text PRIMARY KEY,
    job_id            text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
    job_type          text NOT NULL,
    task_type         text NOT NULL,
    stage             integer NOT NULL CHECK (stage >= 1),
    task_index        integer NOT NULL CHECK (task_index >= 0),
    parameters        jsonb NOT NULL DEFAULT '{}',
    status            coremachine.task_status NOT NULL DEFAULT 'queued',
    result_data       jsonb,
    error_details     text,
    -- Attempt being run or about to run (1-based); messages carry it so a
    -- stale delivery can be told apart from the current one.
    attempt           integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- Fencing token of the current claim: only its holder may settle the task.
    lease_token       uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    UNIQUE (job_id, stage, task_index)
);
CREATE INDEX tasks_status_idx ON coremachine.tasks (status);
CREATE INDEX tasks_lease_expiry_idx ON coremachine.tasks (lease_expires_at)
    WHERE status = 'processing';

-- Transactional outbox: messages implied by a state change, written in the
-- same transaction and published by the relay.
CREATE TABLE coremachine.outbox (
    id            bigserial PRIMARY KEY,
    queue         text NOT NULL,
    message_id    text NOT NULL,
    body          bytea NOT NULL,
    properties    jsonb NOT NULL DEFAULT '{}',
    scheduled_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coremachine.job_events (
    job_id      text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    event_type  text NOT NULL,
    stage       integer,
    task_id     text,
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- Single-leader election for background sweeps (janitor).
CREATE TABLE coremachine.leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE coremachine.janitor_runs (
    run_id        bigserial PRIMARY KEY,
    holder        text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    actions       jsonb NOT NULL DEFAULT '{}',
    error         text
);
