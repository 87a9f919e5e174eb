"""`python -m stack run|up`: the local stack on the embedded defaults.

run: start the four services, submit hello_world (n=100), show its progress,
     print the result, stop the stack; exit 0 if the job completed.
up:  start the four services and keep them running until Ctrl-C / SIGTERM.

Each stack gets a fresh random admin API key (printed by `up`), unless
COREMACHINE_API_KEY sets it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from coremachine.shared.pg_urls import start_embedded
from coremachine.stack.processes import SERVICES, Ports, Stack, data_dir

console = Console(stderr=True)
TERMINAL = {"completed", "completed_with_errors", "failed", "cancelled"}


def resolve_database() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        console.print("[dim]database: DATABASE_URL[/dim]")
        return url
    datadir = data_dir() / "pg"
    console.print(f"[dim]database: embedded PostgreSQL in {datadir}[/dim]")
    return start_embedded(datadir)


def follow(client: httpx.Client, job_id: str, timeout: float) -> dict:
    """Polls the job's status, drawing one progress bar per stage, until it ends."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars: dict[int, TaskID] = {}
        while True:
            job = client.get(f"/api/jobs/status/{job_id}").raise_for_status().json()
            for stage in job["stages"]:
                if stage["stage"] not in bars:
                    bars[stage["stage"]] = progress.add_task(
                        f"stage {stage['stage']}/{job['total_stages']}", total=stage["task_count"]
                    )
                progress.update(
                    bars[stage["stage"]], completed=stage["task_count"] - stage["remaining"]
                )
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.2)


def run_demo(stack: Stack, n: int) -> int:
    with httpx.Client(
        base_url=stack.http_url,
        timeout=30,
        headers={"Authorization": f"Bearer {stack.api_key}"},
    ) as client:
        response = client.post(
            "/api/jobs/submit/hello_world", json={"n": n, "message": "Hello World"}
        )
        response.raise_for_status()
        body = response.json()
        job_id = body["job"]["job_id"]
        note = "submitted" if body["created"] else "already known (same parameters), following"
        console.print(f"job [bold]{job_id}[/bold] {note}")
        job = follow(client, job_id, timeout=600)
    console.print(f"job {job['status']}")
    print(
        json.dumps(
            {
                "job_id": job_id,
                "status": job["status"],
                "result": job["result"],
                "error": job["error"],
            },
            indent=2,
        )
    )
    return 0 if job["status"] == "completed" else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    parser.add_argument("command", choices=["run", "up"])
    parser.add_argument("--n", type=int, default=100, help="hello_world n for `run`")
    args = parser.parse_args()
    stack = Stack(resolve_database(), Ports())
    console.print("starting state, orchestrator, worker, api_gateway ...")
    try:
        stack.up()
        console.print(
            f"[green]stack up[/green]: HTTP {stack.http_url} (OpenAPI {stack.http_url}/docs), "
            f"gRPC {stack.grpc_address}; logs in {stack.log_dir}"
        )
        console.print("metrics: " + ", ".join(f"{s} {stack.metrics_url(s)}" for s in SERVICES))
        if args.command == "up":
            # Printed to stdout (the rest goes to stderr) so scripts can capture it.
            console.print("admin API key (send `Authorization: Bearer <key>`):")
            print(stack.api_key, flush=True)
        if args.command == "run":
            return run_demo(stack, args.n)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        try:
            while not stopping and all(p.poll() is None for p in stack.procs.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        dead = [s for s, p in stack.procs.items() if p.poll() is not None]
        if dead:
            console.print(f"[red]service(s) exited: {', '.join(dead)}[/red]; see {stack.log_dir}")
            return 1
        return 0
    finally:
        console.print("stopping the stack ...")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
