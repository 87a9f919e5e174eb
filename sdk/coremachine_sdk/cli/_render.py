"""What the CLI prints: JSON for scripts, rich tables and progress bars for people."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from coremachine_sdk._models import Diagnosis, Job, JobEvent, JobStatus, JobType, Task, Worker

_MAX_RESULT_LINES = 40
_TASK_ID = re.compile(r"^[0-9a-f]{64}-(s\d+-\d+)$")
_STATUS_STYLE = {
    "completed": "green",
    "completed_with_errors": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "processing": "cyan",
    "running": "cyan",
    "queued": "dim",
}


def plain(value: Any) -> Any:
    """SDK objects as JSON-ready values (dataclasses, enums, datetimes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def print_json(console: Console, value: Any) -> None:
    """One JSON document on stdout (no colour codes, even on a terminal)."""
    console.file.write(json.dumps(plain(value), indent=2, ensure_ascii=False) + "\n")
    console.file.flush()


def print_json_line(console: Console, value: Any) -> None:
    """One JSON line (for streams such as `watch --json`)."""
    console.file.write(json.dumps(plain(value), ensure_ascii=False) + "\n")
    console.file.flush()


def _status(value: str) -> str:
    style = _STATUS_STYLE.get(value)
    return f"[{style}]{value}[/{style}]" if style else value


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _compact(value: Any, width: int = 60) -> str:
    text = "" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_job(console: Console, job: Job) -> None:
    """A job's summary, its stages as a table, and its result or error."""
    console.print(f"[bold]{job.job_id}[/bold]  {job.job_type}  {_status(job.status.value)}")
    console.print(
        f"stage {job.stage}/{job.total_stages}  created {_when(job.created_at)}"
        + (f"  completed {_when(job.completed_at)}" if job.completed_at else "")
    )
    if job.parameters:
        console.print(f"parameters: {_compact(job.parameters, 200)}", markup=False)
    if job.stages:
        table = Table(
            "stage", "status", "queue", "tasks", "completed", "failed", "cancelled", "remaining"
        )
        for s in job.stages:
            table.add_row(
                str(s.stage),
                _status(s.status),
                s.queue,
                str(s.task_count),
                str(s.completed),
                str(s.failed),
                str(s.cancelled),
                str(s.remaining),
            )
        console.print(table)
    if job.waiting:
        console.print(f"[yellow]waiting:[/yellow] {job.waiting}", highlight=False)
    if job.error:
        console.print(f"[red]error:[/red] {job.error}")
    if job.result is not None:
        pretty = json.dumps(job.result, indent=2, ensure_ascii=False)
        if pretty.count("\n") <= _MAX_RESULT_LINES:
            console.print("result:")
            console.print_json(pretty)
        else:  # a big fan-in result would scroll the summary away
            console.print(f"result: {_compact(job.result, 300)}", markup=False)
            console.print(f"[dim]({len(pretty)} characters; --json prints all of it)[/dim]")


def jobs_table(jobs: Iterable[Job]) -> Table:
    table = Table("job_id", "type", "status", "stage", "created", "error")
    for job in jobs:
        table.add_row(
            job.job_id[:16],
            job.job_type,
            _status(job.status.value),
            f"{job.stage}/{job.total_stages}",
            _when(job.created_at),
            (job.error or "")[:60],
        )
    return table


def tasks_table(tasks: Iterable[Task]) -> Table:
    table = Table("stage", "index", "task_type", "status", "attempt", "result / error")
    for task in tasks:
        table.add_row(
            str(task.stage),
            str(task.task_index),
            task.task_type,
            _status(task.status.value),
            str(task.attempt),
            task.error or _compact(task.result),
        )
    return table


def types_table(job_types: Iterable[JobType]) -> Table:
    table = Table("job_type", "stages", "parameters", "description")
    for jt in job_types:
        properties = jt.parameters_schema.get("properties", {})
        table.add_row(jt.job_type, " → ".join(jt.stages), ", ".join(properties), jt.description)
    return table


def _short_task_id(task_id: str) -> str:
    # Task ids are "<job id>-s<stage>-<index>": within one job's stream the suffix says it all.
    match = _TASK_ID.match(task_id)
    return match.group(1) if match else task_id


def event_line(event: JobEvent) -> str:
    where = f"stage {event.stage}" if event.stage else ""
    task = f" task {_short_task_id(event.task_id)}" if event.task_id else ""
    data = f"  {_compact(event.data, 100)}" if event.data else ""
    return f"{event.seq:>5}  {_when(event.created_at)}  {event.event_type:<18} {where}{task}{data}"


def poison_table(messages: list[dict[str, Any]]) -> Table:
    table = Table("queue", "sequence", "reason", "deliveries", "job_id", "task_id", "description")
    for m in messages:
        table.add_row(
            str(m.get("queue", "")),
            str(m.get("sequence", "")),
            str(m.get("reason", "")),
            str(m.get("delivery_count", "")),
            str(m.get("job_id") or "")[:16],
            str(m.get("task_id") or "")[:16],
            str(m.get("description") or "")[:60],
        )
    return table


class StageProgress:
    """One live progress bar per stage, fed with successive snapshots of a job."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._bars: dict[int, Any] = {}

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, job: Job) -> None:
        for stage in job.stages:
            if stage.stage not in self._bars:
                self._bars[stage.stage] = self._progress.add_task(
                    f"stage {stage.stage}/{job.total_stages}",
                    total=stage.task_count,
                    status=stage.status,
                )
            self._progress.update(
                self._bars[stage.stage],
                total=stage.task_count,
                completed=stage.done,
                status=stage.status,
            )


def job_status_text(status: JobStatus) -> str:
    return _status(status.value)


def workers_table(workers: Iterable[Worker]) -> Table:
    table = Table("worker_id", "state", "host", "queues", "load", "version", "last seen")
    for w in workers:
        state = {"live": "[green]live[/green]", "lost": "[red]lost[/red]"}.get(w.state, w.state)
        table.add_row(
            w.worker_id,
            state,
            w.host,
            ", ".join(w.queues),
            f"{w.in_flight}/{w.concurrency}",
            w.version,
            _when(w.last_seen_at),
        )
    return table


def print_diagnosis(console: Console, diagnosis: Diagnosis) -> None:
    console.print(
        f"job {diagnosis.job_id} ({diagnosis.job_type}) is {_status(diagnosis.status.value)},"
        f" at stage {diagnosis.stage}/{diagnosis.total_stages}"
    )
    stage = diagnosis.details.get("current_stage") or {}
    if stage.get("planned"):
        console.print(
            f"stage {stage.get('stage')}: {stage.get('task_count')} tasks on queue"
            f" {stage.get('queue')!r}: {stage.get('queued')} queued,"
            f" {stage.get('processing')} running, {stage.get('completed')} completed,"
            f" {stage.get('failed')} failed, {stage.get('cancelled')} cancelled",
            markup=False,
        )
    if not diagnosis.reasons:
        console.print("nothing holds it that CoreMachine can see")
    for reason in diagnosis.reasons:
        console.print(f"- [bold]{reason.code}[/bold]: ", end="")
        console.print(reason.message, markup=False, highlight=False)
