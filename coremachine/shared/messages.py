"""Wire schemas of the queue messages (JSON bodies).

The jobs queue carries `StageReady` and `FinalizeJob`; the tasks queue carries
`TaskMessage`. Task parameters are not in the message: the worker receives
them when it claims the task, so messages stay small whatever the payload.

A jobs-queue message for a small stage carries a `JobContext`: the job's
parameters, stage summaries and the finished stage's results, read in the
transaction that finished the stage. The orchestrator then plans or
finalizes without reading them back (one state round trip less per stage);
without it (a large stage), it reads them from the state service.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from coremachine.shared.domain.names import JOB_ID_PATTERN, NAME_PATTERN, TASK_ID_PATTERN

# Every id and number is checked here, before it reaches PostgreSQL or
# protobuf: a body that decodes but holds a NUL, a lone surrogate, a stage of
# 2**40 or an id of another shape is undecodable, and dead-lettered alone.
INT32_MAX = 2**31 - 1
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
TypeName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")]
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]


class _Message(BaseModel):
    # Unknown fields are ignored, not refused: a newer sender may add one (as
    # `context` was added) while consumers of the previous release still run
    # during a rolling upgrade. (Consumers from before this rule refuse them:
    # upgrade the orchestrators before the state services once.)
    model_config = ConfigDict(extra="ignore", frozen=True)


class StageResultItem(_Message):
    task_index: Int32
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    # As stored: JSON text, or a claim-check reference.
    result_json: str | None = None
    error: str = ""


class JobContext(_Message):
    """The job as the transaction that finished a stage saw it."""

    parameters: dict[str, Any]
    total_stages: PositiveInt32
    # Per-stage summaries of the stages finished so far (keys "1", "2", ...).
    stage_summaries: dict[str, Any]
    # The finished stage's task results, by task index.
    results: list[StageResultItem]


class StageReady(_Message):
    kind: Literal["stage_ready"] = "stage_ready"
    job_id: JobId
    job_type: TypeName
    stage: PositiveInt32
    # The previous stage's results and the job's parameters (small stages only).
    context: JobContext | None = None
    # Fingerprint of the job's definition: only an orchestrator serving it
    # acts on the message ("": any serving the job type, as before).
    definition: Fingerprint = ""

    @property
    def message_id(self) -> str:
        return f"{self.job_id}:stage:{self.stage}"


class FinalizeJob(_Message):
    kind: Literal["finalize_job"] = "finalize_job"
    job_id: JobId
    job_type: TypeName
    # The last stage's results and the job's parameters (small stages only).
    context: JobContext | None = None
    definition: Fingerprint = ""

    @property
    def message_id(self) -> str:
        return f"{self.job_id}:finalize"


class TaskMessage(_Message):
    kind: Literal["task"] = "task"
    task_id: TaskId
    job_id: JobId
    task_type: TypeName
    attempt: PositiveInt32

    @property
    def message_id(self) -> str:
        # One message per attempt: a retry is a new message, a redelivery of
        # the same attempt is a duplicate the claim rejects.
        return f"{self.task_id}:{self.attempt}"


JobQueueMessage = Annotated[StageReady | FinalizeJob, Field(discriminator="kind")]
job_message_adapter: TypeAdapter[StageReady | FinalizeJob] = TypeAdapter(JobQueueMessage)
