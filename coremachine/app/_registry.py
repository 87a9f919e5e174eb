"""Loading apps and checking them together: what the orchestrator and the worker serve.

Not part of the public API: the services build a `Registry` at start-up, and
every problem found here stops the service with a message naming the
culprit (the app path, the job type, the stage, the task type).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from coremachine.app._app import App
from coremachine.app._errors import AppError
from coremachine.app._jobs import JobType
from coremachine.app._stages import Stage
from coremachine.app._tasks import TaskType

ENTRY_POINT_GROUP = "coremachine.apps"


@dataclass(frozen=True, slots=True)
class AppSource:
    """Where an app comes from: an import path, found in a setting or an entry point."""

    path: str  # "package.module:attribute"
    origin: str  # "COREMACHINE_APPS" or "entry point coremachine.apps:<name>"


def app_sources(setting: str | None) -> list[AppSource]:
    """The apps to load: those COREMACHINE_APPS names (comma-separated), else
    every app registered in the `coremachine.apps` entry-point group."""
    if setting and setting.strip():
        return [AppSource(p.strip(), "COREMACHINE_APPS") for p in setting.split(",") if p.strip()]
    return [
        AppSource(ep.value, f"entry point {ENTRY_POINT_GROUP}:{ep.name}")
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    ]


def load_app(source: AppSource) -> App:
    """Imports one app; `module:attribute` may name an App or a function returning one."""
    module_name, _, attribute = source.path.partition(":")
    if not module_name or not attribute:
        raise AppError(f"app {source.path!r} ({source.origin}) must look like 'package.module:app'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppError(
            f"cannot import app {source.path!r} ({source.origin}): {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppError(
                f"app {source.path!r} ({source.origin}): module {module_name!r} has no {attribute!r}"
            ) from None
    if not isinstance(target, App) and callable(target):
        try:
            target = target()
        except Exception as exc:
            raise AppError(
                f"app {source.path!r} ({source.origin}): building it failed:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(target, App):
        raise AppError(
            f"app {source.path!r} ({source.origin}) is a {type(target).__name__}, not a"
            " coremachine.app.App (or a function returning one)"
        )
    return target


def load_registry(setting: str | None) -> Registry:
    """Loads and checks the configured apps (the services call this at start-up)."""
    sources = app_sources(setting)
    if not sources:
        raise AppError(
            "no apps to load: set COREMACHINE_APPS (e.g. 'mypackage.jobs:app') or install a"
            f" package that registers one in the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    return Registry([load_app(s) for s in sources])


class Registry:
    """The job types and task types of the loaded apps, checked together."""

    def __init__(self, apps: Sequence[App]) -> None:
        self.apps = list(apps)
        self._tasks = _merge_task_types(self.apps)
        jobs: dict[str, JobType] = {}
        for app in self.apps:
            for name, job_type in app.job_types.items():
                if name in jobs:
                    raise AppError(
                        f"job type {name!r} is defined twice: by app {jobs[name].app!r}"
                        f" and by app {app.name!r}"
                    )
                jobs[name] = self._resolved(job_type)
        self._jobs = jobs
        self._fingerprints = {name: jt.fingerprint() for name, jt in jobs.items()}

    def _resolved(self, job_type: JobType) -> JobType:
        """The job type with each stage's task type looked up among every loaded app's."""
        stages = []
        for stage in job_type.stages:
            known = self._tasks.get(stage.task_type)
            if known is None:
                raise AppError(
                    f"job type {job_type.name!r} (app {job_type.app!r}) stage {stage.name!r}"
                    f" uses task type {stage.task_type!r}, which no loaded app defines"
                    f" (apps: {', '.join(a.name for a in self.apps)})"
                )
            stages.append(dataclasses.replace(stage, task=known))
        _check_parameters(job_type)
        return dataclasses.replace(job_type, stages=tuple(stages))

    # -- lookups ---------------------------------------------------------------

    def job_type(self, name: str) -> JobType | None:
        return self._jobs.get(name)

    def job_types(self) -> list[JobType]:
        return [self._jobs[n] for n in sorted(self._jobs)]

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def fingerprint(self, name: str) -> str:
        return self._fingerprints[name]

    def serves(self, job_type: str, fingerprint: str | None) -> bool:
        """Whether this registry serves that definition (None: any of the type)."""
        mine = self._fingerprints.get(job_type)
        return mine is not None and (not fingerprint or fingerprint == mine)

    def task_type(self, name: str) -> TaskType | None:
        return self._tasks.get(name)

    def handlers(self) -> dict[str, TaskType]:
        """The task types this process can run (those with a handler)."""
        return {n: t for n, t in self._tasks.items() if t.handler is not None}

    @staticmethod
    def queue_of(stage: Stage, default: str) -> str:
        """Where a stage's tasks go: the stage's queue, its task type's, else the default."""
        task_queue = stage.task.queue if isinstance(stage.task, TaskType) else None
        return stage.queue or task_queue or default


def _merge_task_types(apps: Iterable[App]) -> dict[str, TaskType]:
    merged: dict[str, TaskType] = {}
    for app in apps:
        for name, task_type in app.task_types.items():
            seen = merged.get(name)
            if seen is None:
                merged[name] = task_type
            elif seen.handler is not None and task_type.handler is not None:
                raise AppError(
                    f"task type {name!r} is defined twice: by app {seen.app!r} and by app"
                    f" {task_type.app!r}"
                )
            elif (seen.queue or task_type.queue) and seen.queue != task_type.queue:
                raise AppError(
                    f"task type {name!r} has queue {seen.queue!r} in app {seen.app!r} but"
                    f" {task_type.queue!r} in app {task_type.app!r}"
                )
            elif task_type.handler is not None:
                merged[name] = task_type  # the definition wins over a declaration
    return merged


def _check_parameters(job_type: JobType) -> None:
    model = job_type.parameters
    where = f"job type {job_type.name!r} (app {job_type.app!r})"
    try:
        json.dumps(model.model_json_schema())
    except Exception as exc:
        raise AppError(
            f"{where}: parameter model {model.__name__} is not JSON-serializable"
            f" (its JSON Schema cannot be built): {type(exc).__name__}: {exc}"
        ) from exc
