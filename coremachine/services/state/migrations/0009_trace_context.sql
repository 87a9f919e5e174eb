-- Telemetry: a job's OpenTelemetry trace context travels with its work.
-- The W3C traceparent of the span the job was created under: every message
-- the state service writes for the job (tasks, stage ready, retries, janitor
-- reclaims, redrives, released parked messages) continues that trace.
ALTER TABLE coremachine.jobs ADD COLUMN trace_context text;
-- The traceparent of a task's last reported attempt, so that the span of the
-- stage advancement links to the spans of the tasks it covers.
ALTER TABLE coremachine.tasks ADD COLUMN trace_context text;
