"""The shapes names must have: they travel in URLs, ids, messages and queue names."""

from __future__ import annotations

# Job types appear in URLs (/api/jobs/submit/<job type>) and in job ids' hash input.
JOB_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Task types and app names.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$"
# Queue names as Service Bus accepts them (and as they read in metrics labels).
QUEUE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,49}$"
# Task ids as shared.domain.ids.task_id_for makes them: job id, stage, index.
TASK_ID_PATTERN = r"^[0-9a-f]{64}-s[1-9][0-9]{0,9}-[0-9]{1,10}$"
JOB_ID_PATTERN = r"^[0-9a-f]{64}$"
