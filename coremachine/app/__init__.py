"""The public job API: define job types and task handlers in your own package.

    from pydantic import BaseModel
    from coremachine.app import App, FanIn, FromParameter, Stage, TaskContext

    app = App("reports")

    class Params(BaseModel):
        n: int = 10

    @app.task
    def measure(params: dict, ctx: TaskContext) -> dict:
        return {"value": params["index"] ** 2}

    @app.task
    def total(params: dict, ctx: TaskContext) -> int:
        return sum(r.result["value"] for r in ctx.previous_results)

    app.job("report", parameters=Params, stages=[
        Stage("measure", measure, FromParameter("n")),
        Stage("total", total, FanIn()),
    ])

Run it with COREMACHINE_APPS=yourpackage.module:app (README "Write your own job").
Nothing here exposes protobuf or gRPC.
"""

from coremachine.app._app import App
from coremachine.app._context import TaskContext
from coremachine.app._errors import AppError, PermanentError, RetryableError
from coremachine.app._jobs import JobType
from coremachine.app._stages import (
    AggregateContext,
    Custom,
    FanIn,
    FromParameter,
    MatchPrevious,
    PerItem,
    PlanContext,
    PreviousResult,
    Single,
    Stage,
)
from coremachine.app._tasks import TaskType
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.domain.retry import RetryPolicy

__all__ = [
    "AggregateContext",
    "App",
    "AppError",
    "BlobStore",
    "Custom",
    "FanIn",
    "FromParameter",
    "JobType",
    "MatchPrevious",
    "PerItem",
    "PermanentError",
    "PlanContext",
    "PreviousResult",
    "RetryPolicy",
    "RetryableError",
    "Single",
    "Stage",
    "TaskContext",
    "TaskType",
]
