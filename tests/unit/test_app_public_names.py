"""The public job API is deliberate: a snapshot of its names, each documented,
and nothing in it that exposes protobuf or gRPC."""

from __future__ import annotations

import inspect

import coremachine.app
from coremachine.app import App, TaskContext

PUBLIC_NAMES = [
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
APP_METHODS = ["declare_task", "job", "job_types", "task", "task_types"]
CONTEXT_MEMBERS = [
    "attempt",
    "blobs",
    "heartbeat",
    "is_cancelled",
    "job_id",
    "job_type",
    "logger",
    "previous_results",
    "progress",
    "queue",
    "stage",
    "task_id",
    "task_index",
    "task_type",
    "wait_cancelled",
    "wait_cancelled_blocking",
]


def test_the_public_names_are_the_snapshot():
    assert sorted(coremachine.app.__all__) == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(coremachine.app, name).__doc__, f"{name} has no docstring"


def test_app_and_context_expose_what_the_docs_promise():
    public = sorted(n for n, _ in inspect.getmembers(App) if not n.startswith("_"))
    assert public == APP_METHODS
    members = {n for n in dir(TaskContext) if not n.startswith("_")}
    members |= {f for f in TaskContext.__dataclass_fields__ if not f.startswith("_")}
    assert sorted(members) == CONTEXT_MEMBERS


def test_nothing_public_imports_protobuf_or_grpc():
    for name in PUBLIC_NAMES:
        module = inspect.getmodule(getattr(coremachine.app, name))
        assert module is not None
        source = inspect.getsource(module)
        for forbidden in ("_pb2", "import grpc", "from grpc"):
            assert forbidden not in source, f"{module.__name__} mentions {forbidden}"
