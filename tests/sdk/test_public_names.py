"""The SDK's public surface is deliberate: a snapshot of its names, each documented."""

from __future__ import annotations

import inspect

import coremachine_sdk
from coremachine_sdk import AsyncClient, Client

PUBLIC_NAMES = [
    "DEFAULT_ADDRESS",
    "AsyncClient",
    "Client",
    "Conflict",
    "CoreMachineError",
    "Diagnosis",
    "DiagnosisReason",
    "InvalidParameters",
    "Job",
    "JobEvent",
    "JobNotFound",
    "JobStatus",
    "JobType",
    "PermissionDenied",
    "Stage",
    "Task",
    "TaskStatus",
    "Timeout",
    "TlsOptions",
    "Unauthorized",
    "Unavailable",
    "Worker",
]
CLIENT_METHODS = [
    "cancel",
    "close",
    "diagnose",
    "get",
    "job_types",
    "list_jobs",
    "list_tasks",
    "resubmit",
    "submit",
    "wait",
    "watch",
    "workers",
]


def test_public_names_snapshot() -> None:
    """Adding or removing a public name is an API change: update this list on purpose."""
    assert sorted(coremachine_sdk.__all__) == sorted(PUBLIC_NAMES)
    public_attributes = {
        name
        for name in vars(coremachine_sdk)
        if not name.startswith("_") and not inspect.ismodule(getattr(coremachine_sdk, name))
    }
    assert public_attributes == set(PUBLIC_NAMES)


def test_public_classes_and_methods_have_one_line_docstrings() -> None:
    for name in PUBLIC_NAMES:
        value = getattr(coremachine_sdk, name)
        if inspect.isclass(value):
            assert value.__doc__ and value.__doc__.strip(), name


def test_sync_and_async_clients_offer_the_same_calls() -> None:
    for cls in (Client, AsyncClient):
        methods = sorted(n for n, v in vars(cls).items() if not n.startswith("_") and callable(v))
        assert methods == CLIENT_METHODS, cls
        for method in methods:
            doc = getattr(cls, method).__doc__
            assert doc and doc.strip().splitlines()[0], f"{cls.__name__}.{method}"
