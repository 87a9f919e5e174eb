"""`App`: a group of job types and task handlers that CoreMachine loads.

    app = App("imaging")

    @app.task(queue="gpu")
    def render(params, ctx): ...

    app.job("thumbnails", parameters=Params, stages=[Stage("render", render, FromParameter("n"))])

The orchestrator and the worker load apps named by COREMACHINE_APPS
("package.module:app", several separated by commas) or registered in the
`coremachine.apps` entry-point group. Defining things does no I/O: an app is
checked when a service loads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

from pydantic import BaseModel

from coremachine.app._errors import AppError
from coremachine.app._jobs import JobType
from coremachine.app._stages import AggregateContext, Stage
from coremachine.app._tasks import Handler, TaskType, takes_context
from coremachine.shared.domain.names import JOB_TYPE_PATTERN, NAME_PATTERN, QUEUE_PATTERN

_NAME = re.compile(NAME_PATTERN)
_JOB_TYPE = re.compile(JOB_TYPE_PATTERN)
_QUEUE = re.compile(QUEUE_PATTERN)


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AppError(
            f"{kind} name {name!r} is not allowed: letters, digits, '_', '-', '.',"
            " starting with a letter, at most 100 characters"
        )
    return name


def check_job_type_name(name: str) -> str:
    if not isinstance(name, str) or not _JOB_TYPE.match(name):
        raise AppError(
            f"job type name {name!r} is not allowed: lower-case letters, digits and '_',"
            " starting with a letter, at most 64 characters (it is part of URLs)"
        )
    return name


def check_queue(name: str, where: str) -> str:
    if not isinstance(name, str) or not _QUEUE.match(name):
        raise AppError(
            f"{where}: queue name {name!r} is not allowed: lower-case letters, digits,"
            " '_', '-', '.', at most 50 characters (Service Bus queue names)"
        )
    return name


class App:
    """Job types and task types under one name."""

    def __init__(self, name: str) -> None:
        self.name = check_name("app", name)
        self._tasks: dict[str, TaskType] = {}
        self._jobs: dict[str, JobType] = {}

    def __repr__(self) -> str:
        return f"App({self.name!r}: {len(self._jobs)} job types, {len(self._tasks)} task types)"

    # -- task types ------------------------------------------------------------

    @overload
    def task(self, handler: Handler, /) -> TaskType: ...

    @overload
    def task(
        self, name: str | None = None, *, queue: str | None = None
    ) -> Callable[[Handler], TaskType]: ...

    def task(self, name: Any = None, *, queue: str | None = None) -> Any:
        """Registers a task handler: `@app.task`, `@app.task("name")` or
        `@app.task(queue="gpu")`. Sync handlers run in a thread, async ones
        on the worker's event loop; either takes (params) or (params, ctx)."""
        if callable(name):
            return self._add_task(name, None, queue)

        def register(handler: Handler) -> TaskType:
            return self._add_task(handler, name, queue)

        return register

    def declare_task(self, name: str, *, queue: str | None = None) -> TaskType:
        """A task type that another app's workers handle (stages may use it;
        workers that load only this app do not run it)."""
        task_type = TaskType(check_name("task type", name), None, _queue(queue, name), self.name)
        return self._store_task(task_type)

    def _add_task(self, handler: Handler, name: str | None, queue: str | None) -> TaskType:
        if not callable(handler):
            raise AppError(f"app {self.name}: @task needs a function, got {handler!r}")
        task_name = check_name("task type", name or handler.__name__)
        try:
            with_context = takes_context(handler)
        except TypeError as exc:
            raise AppError(f"app {self.name}: task type {task_name!r}: {exc}") from None
        task_type = TaskType(task_name, handler, _queue(queue, task_name), self.name, with_context)
        return self._store_task(task_type)

    def _store_task(self, task_type: TaskType) -> TaskType:
        if task_type.name in self._tasks:
            raise AppError(f"app {self.name}: task type {task_type.name!r} is defined twice")
        self._tasks[task_type.name] = task_type
        return task_type

    # -- job types -------------------------------------------------------------

    def job(
        self,
        name: str,
        *,
        parameters: type[BaseModel],
        stages: Iterable[Stage],
        aggregate: Callable[[AggregateContext], Any] | None = None,
        description: str = "",
        version: str = "",
    ) -> JobType:
        """Registers a job type: its pydantic parameter model (validated at
        submit), its stages in order, and an optional aggregator that turns
        the last stage's results into the job's result (default: a summary of
        the stages)."""
        check_job_type_name(name)
        if name in self._jobs:
            raise AppError(f"app {self.name}: job type {name!r} is defined twice")
        if not (isinstance(parameters, type) and issubclass(parameters, BaseModel)):
            raise AppError(
                f"app {self.name}: job type {name!r}: parameters must be a pydantic model class,"
                f" got {parameters!r}"
            )
        stage_list = tuple(stages)
        if not stage_list:
            raise AppError(f"app {self.name}: job type {name!r} has no stages")
        for stage in stage_list:
            if not isinstance(stage, Stage):
                raise AppError(f"app {self.name}: job type {name!r}: {stage!r} is not a Stage")
            if stage.queue is not None:
                check_queue(stage.queue, f"job type {name!r} stage {stage.name!r}")
        names = [s.name for s in stage_list]
        if len(set(names)) != len(names):
            raise AppError(f"app {self.name}: job type {name!r} has two stages of the same name")
        job_type = JobType(
            name=name,
            parameters=parameters,
            stages=stage_list,
            aggregate=aggregate,
            description=description or (parameters.__doc__ or "").strip().split("\n")[0],
            version=version,
            app=self.name,
        )
        self._jobs[name] = job_type
        return job_type

    # -- what the services read ------------------------------------------------

    @property
    def task_types(self) -> Mapping[str, TaskType]:
        return dict(self._tasks)

    @property
    def job_types(self) -> Mapping[str, JobType]:
        return dict(self._jobs)


def _queue(queue: str | None, task_name: str) -> str | None:
    return None if queue is None else check_queue(queue, f"task type {task_name!r}")
