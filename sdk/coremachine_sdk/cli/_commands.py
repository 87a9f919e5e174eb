"""The CLI's commands: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from coremachine_sdk._errors import Timeout
from coremachine_sdk._models import Job
from coremachine_sdk._sync_client import Client
from coremachine_sdk.cli import _outside, _render
from coremachine_sdk.cli._parser import OK, UsageError, exit_code_for_job, parse_parameters

_POLL_SECONDS = 0.25


@dataclass
class Io:
    """Where output goes: results on stdout, progress and messages on stderr."""

    out: Console
    err: Console
    json: bool


def follow(client: Client, job: Job, timeout: float | None, io: Io) -> Job:
    """Polls the job until it ends, drawing one progress bar per stage on stderr."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if io.json:
        return client.wait(job.job_id, timeout)
    with _render.StageProgress(io.err) as progress:
        while True:
            progress.update(job)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise Timeout(f"job {job.job_id} still {job.status} after {timeout}s")
            time.sleep(_POLL_SECONDS)
            job = client.get(job.job_id)


def _finish(client: Client, job: Job, args: argparse.Namespace, io: Io, verb: str) -> int:
    if not args.wait:
        if io.json:
            _render.print_json(io.out, job)
        else:
            io.err.print(f"job {verb}: {_render.job_status_text(job.status)}")
            io.out.print(job.job_id, markup=False, highlight=False)
        return OK
    if not io.json:
        io.err.print(f"job [bold]{job.job_id}[/bold] {verb}")
    job = follow(client, job, args.timeout, io)
    if io.json:
        _render.print_json(io.out, job)
    else:
        _render.print_job(io.out, job)
    return exit_code_for_job(job.status)


def submit(client: Client, args: argparse.Namespace, io: Io) -> int:
    parameters = parse_parameters(args.parameters)
    job = client.submit(args.job_type, **parameters)
    return _finish(client, job, args, io, "submitted")


def status(client: Client, args: argparse.Namespace, io: Io) -> int:
    job = client.get(args.job_id)
    if io.json:
        _render.print_json(io.out, job)
    else:
        _render.print_job(io.out, job)
    return OK


def jobs(client: Client, args: argparse.Namespace, io: Io) -> int:
    found = list(client.list_jobs(status=args.status, job_type=args.job_type, limit=args.limit))
    if io.json:
        _render.print_json(io.out, found)
    else:
        io.out.print(_render.jobs_table(found))
    return OK


def tasks(client: Client, args: argparse.Namespace, io: Io) -> int:
    found = list(
        client.list_tasks(args.job_id, stage=args.stage, status=args.status, limit=args.limit)
    )
    if io.json:
        _render.print_json(io.out, found)
    else:
        io.out.print(_render.tasks_table(found))
    return OK


def watch(client: Client, args: argparse.Namespace, io: Io) -> int:
    for event in client.watch(args.job_id, after_seq=args.after_seq):
        if io.json:
            _render.print_json_line(io.out, event)
        else:
            io.out.print(_render.event_line(event), markup=False, highlight=False)
    return OK


def cancel(client: Client, args: argparse.Namespace, io: Io) -> int:
    job = client.cancel(args.job_id)
    if io.json:
        _render.print_json(io.out, job)
    else:
        io.out.print(f"{job.job_id} {_render.job_status_text(job.status)}")
    return OK


def resubmit(client: Client, args: argparse.Namespace, io: Io) -> int:
    job = client.resubmit(args.job_id, current_definition=args.current_definition)
    return _finish(client, job, args, io, "resubmitted")


def types(client: Client, args: argparse.Namespace, io: Io) -> int:
    found = client.job_types()
    if io.json:
        _render.print_json(io.out, found)
    else:
        io.out.print(_render.types_table(found))
    return OK


def poison(args: argparse.Namespace, io: Io) -> int:
    body = _outside.fetch_poison(args.http, args.api_key, args.queue)
    messages = _outside.poison_messages(body)
    if io.json or messages is None:
        _render.print_json(io.out, body)
    elif not messages:
        io.err.print("no dead-lettered messages")
    else:
        io.out.print(_render.poison_table(messages))
    return OK


def up(args: argparse.Namespace, io: Io) -> int:
    command = _outside.find_server(Path.cwd(), os.environ.get("COREMACHINE_REPO"))
    if command is None:
        raise UsageError(
            "`up` runs the local stack with `coremachine-server up`: install the server "
            "(pip install coremachine), or run it inside a CoreMachine checkout, "
            "or set COREMACHINE_REPO to its path"
        )
    io.err.print(f"running `{' '.join(command)}` (Ctrl-C stops it)")
    return _outside.run_stack(command)


def workers(client: Client, args: argparse.Namespace, io: Io) -> int:
    found = client.workers(include_gone_seconds=args.gone)
    if io.json:
        _render.print_json(io.out, found)
    else:
        io.out.print(_render.workers_table(found))
    return OK


def why(client: Client, args: argparse.Namespace, io: Io) -> int:
    diagnosis = client.diagnose(args.job_id)
    if io.json:
        _render.print_json(io.out, diagnosis)
    else:
        _render.print_diagnosis(io.out, diagnosis)
    return OK


CLIENT_COMMANDS = {
    "submit": submit,
    "status": status,
    "jobs": jobs,
    "tasks": tasks,
    "watch": watch,
    "cancel": cancel,
    "resubmit": resubmit,
    "types": types,
    "workers": workers,
    "why": why,
}
LOCAL_COMMANDS = {"poison": poison, "up": up}
