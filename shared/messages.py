"""Wire schemas of the queue messages (JSON bodies).

The jobs queue carries `StageReady` and `FinalizeJob`; the tasks queue carries
`TaskMessage`. Task parameters are not in the message: the worker receives
them when it claims the task, so messages stay small whatever the payload.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageReady(_Message):
    kind: Literal["stage_ready"] = "stage_ready"
    job_id: str
    job_type: str
    stage: int = Field(ge=1)

    @property
    def message_id(self) -> str:
        return f"{self.job_id}:stage:{self.stage}"


class FinalizeJob(_Message):
    kind: Literal["finalize_job"] = "finalize_job"
    job_id: str
    job_type: str

    @property
    def message_id(self) -> str:
        return f"{self.job_id}:finalize"


class TaskMessage(_Message):
    kind: Literal["task"] = "task"
    task_id: str
    job_id: str
    task_type: str
    attempt: int = Field(ge=1)

    @property
    def message_id(self) -> str:
        # One message per attempt: a retry is a new message, a redelivery of
        # the same attempt is a duplicate the claim rejects.
        return f"{self.task_id}:{self.attempt}"


JobQueueMessage = Annotated[StageReady | FinalizeJob, Field(discriminator="kind")]
job_message_adapter: TypeAdapter[StageReady | FinalizeJob] = TypeAdapter(JobQueueMessage)
