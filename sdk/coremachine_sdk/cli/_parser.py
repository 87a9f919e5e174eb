"""The CLI's arguments, `key=value` parameters and exit codes."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from coremachine_sdk._channel import DEFAULT_ADDRESS
from coremachine_sdk._errors import (
    CoreMachineError,
    InvalidParameters,
    JobNotFound,
    PermissionDenied,
    Timeout,
    Unauthorized,
    Unavailable,
)
from coremachine_sdk._models import JobStatus, TaskStatus

# Exit codes scripts can rely on (documented in `coremachine --help`).
OK = 0
JOB_FAILED = 1  # also any other error
USAGE = 2
NOT_FOUND = 3
AUTH = 4
UNAVAILABLE = 5

DEFAULT_HTTP = "http://localhost:8080"

EPILOG = """\
exit codes: 0 ok; 1 the job ended failed or cancelled (with --wait), or another error;
2 usage error or invalid parameters; 3 not found; 4 authentication or permission error;
5 gateway unavailable or timeout.

environment: COREMACHINE_ADDRESS (gRPC, default localhost:50051), COREMACHINE_API_KEY,
COREMACHINE_HTTP (default http://localhost:8080), COREMACHINE_REPO (for `up`).
"""


class UsageError(Exception):
    """A command line that cannot be run (exit code 2)."""


def exit_code_for(error: BaseException) -> int:
    """The exit code for an error that ends a command."""
    if isinstance(error, UsageError | InvalidParameters):
        return USAGE
    if isinstance(error, JobNotFound):
        return NOT_FOUND
    if isinstance(error, Unauthorized | PermissionDenied):
        return AUTH
    if isinstance(error, Unavailable | Timeout):
        return UNAVAILABLE
    if isinstance(error, CoreMachineError):
        return JOB_FAILED
    raise error


def exit_code_for_job(status: JobStatus) -> int:
    """0 when a waited-for job succeeded (with or without tolerated errors), else 1."""
    return OK if status.is_success else JOB_FAILED


def parse_value(text: str) -> Any:
    """A parameter value: JSON when it parses (100, true, [1,2], {"a":1}), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """`key=value` words as job parameters; a repeated key is a usage error."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"parameter {item!r} is not key=value")
        if key in parameters:
            raise UsageError(f"parameter {key!r} given twice")
        parameters[key] = parse_value(value)
    return parameters


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    # Declared on the main parser (with defaults) and on every command (without),
    # so `coremachine --json status X` and `coremachine status X --json` both work.
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    env = os.environ.get
    parser.add_argument(
        "--address",
        default=default(env("COREMACHINE_ADDRESS", DEFAULT_ADDRESS)),
        help="gateway gRPC address [COREMACHINE_ADDRESS, default localhost:50051]",
    )
    parser.add_argument(
        "--api-key",
        default=default(env("COREMACHINE_API_KEY")),
        help="API key, sent as `authorization: Bearer` [COREMACHINE_API_KEY]",
    )
    parser.add_argument(
        "--http",
        default=default(env("COREMACHINE_HTTP", DEFAULT_HTTP)),
        help="gateway HTTP URL, for `poison` [COREMACHINE_HTTP, default http://localhost:8080]",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON instead of tables",
    )
    parser.add_argument(
        "--tls", action="store_true", default=default(False), help="connect with TLS"
    )
    parser.add_argument("--tls-ca", default=default(None), help="CA file to trust (implies --tls)")
    parser.add_argument("--tls-cert", default=default(None), help="client certificate (mTLS)")
    parser.add_argument("--tls-key", default=default(None), help="client private key (mTLS)")


def build_parser() -> argparse.ArgumentParser:
    """The `coremachine` argument parser."""
    parser = argparse.ArgumentParser(
        prog="coremachine",
        description="Submit and follow CoreMachine jobs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    submit = command("submit", "submit a job: coremachine submit hello_world n=100 message=hi")
    submit.add_argument("job_type")
    submit.add_argument(
        "parameters", nargs="*", metavar="key=value", help="values parsed as JSON when possible"
    )
    _wait_options(submit)

    status = command("status", "show a job's status, stages and result")
    status.add_argument("job_id")

    jobs = command("jobs", "list jobs, newest first")
    jobs.add_argument("--status", choices=_choices(JobStatus))
    jobs.add_argument("--type", dest="job_type")
    jobs.add_argument("--limit", type=_positive, default=20)

    tasks = command("tasks", "list a job's tasks")
    tasks.add_argument("job_id")
    tasks.add_argument("--stage", type=_positive)
    tasks.add_argument("--status", choices=_choices(TaskStatus))
    tasks.add_argument("--limit", type=_positive, default=100)

    watch = command("watch", "print a job's events until it ends")
    watch.add_argument("job_id")
    watch.add_argument("--after-seq", type=int, default=0)

    cancel = command("cancel", "cancel a job")
    cancel.add_argument("job_id")

    resubmit = command("resubmit", "re-run a failed or cancelled job's failed tasks")
    resubmit.add_argument("job_id")
    resubmit.add_argument(
        "--current-definition",
        action="store_true",
        help="first move the job onto its type's current definition (a job waiting for an"
        " orchestrator of the definition it started with)",
    )
    _wait_options(resubmit)

    command("types", "list the job types and their parameters")

    workers = command("workers", "list the workers: live, lost (no heartbeat) or stopped")
    workers.add_argument(
        "--gone",
        type=int,
        default=0,
        metavar="SECONDS",
        help="also workers gone within this many seconds (default: an hour)",
    )

    why = command("why", "explain what holds a job that is not done yet")
    why.add_argument("job_id")

    poison = command("poison", "list dead-lettered messages (HTTP GET /api/monitor/poison)")
    poison.add_argument("--queue", help="only this queue (jobs or tasks)")

    command(
        "up",
        "run the local stack in the foreground (`coremachine-server up`: the installed "
        "server, or the one of a CoreMachine checkout found from the current directory "
        "or COREMACHINE_REPO)",
    )
    return parser


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="wait for the job to end, with progress bars"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait at most (exit 5 after)"
    )


def _choices(enum: type[JobStatus] | type[TaskStatus]) -> list[str]:
    return [s.value for s in enum if s.value != "unknown"]
