"""`coremachine-server run|up`: the local stack on the embedded defaults.

run: start the four services, submit hello_world (n=100), show its progress,
     print the result, stop the stack; exit 0 if the job completed.
up:  start the four services and keep them running until Ctrl-C / SIGTERM,
     restarting (with backoff) any process that exits; each restart is
     logged here. `--workers 3 --orchestrators 2 --states 2` runs replicas;
     replica i of a service listens on its port + i * --port-step.

Each stack gets a fresh random admin API key (printed by `up`), unless
COREMACHINE_API_KEY sets it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
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
from coremachine.stack.processes import Ports, Stack, data_dir

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coremachine-server")
    parser.add_argument("command", choices=["run", "up"])
    parser.add_argument("--n", type=int, default=100, help="hello_world n for `run`")
    defaults = Ports()
    for service, flag in (
        ("state", "states"),
        ("orchestrator", "orchestrators"),
        ("worker", "workers"),
        ("api_gateway", "gateways"),
    ):
        parser.add_argument(
            f"--{flag}", type=_positive, default=1, help=f"replicas of {service} (default 1)"
        )
    for attr, flag, variable in (
        ("state", "state-port", "STATE_GRPC_PORT"),
        ("orchestrator", "orchestrator-port", "ORCHESTRATOR_GRPC_PORT"),
        ("worker", "worker-port", "WORKER_GRPC_PORT"),
        ("gateway_grpc", "grpc-port", "GATEWAY_GRPC_PORT"),
        ("gateway_http", "http-port", "GATEWAY_HTTP_PORT"),
    ):
        parser.add_argument(
            f"--{flag}",
            dest=attr,
            type=int,
            default=int(os.environ.get(variable) or getattr(defaults, attr)),
            help=f"port of the first replica (default ${variable} or {getattr(defaults, attr)})",
        )
    parser.add_argument("--port-step", type=_positive, default=defaults.step)
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ports = Ports(
        args.state,
        args.orchestrator,
        args.worker,
        args.gateway_grpc,
        args.gateway_http,
        step=args.port_step,
    )
    replicas = {
        "state": args.states,
        "orchestrator": args.orchestrators,
        "worker": args.workers,
        "api_gateway": args.gateways,
    }
    stack = Stack(resolve_database(), ports, replicas=replicas)
    console.print(f"starting {', '.join(stack.processes)} ...")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stack.up()
        gateways = ", ".join(
            f"HTTP http://127.0.0.1:{p.http_port} gRPC 127.0.0.1:{p.grpc_port}"
            for p in stack.replicas_of("api_gateway")
        )
        console.print(
            f"[green]stack up[/green]: {gateways} (OpenAPI {stack.http_url}/docs);"
            f" logs in {stack.log_dir}"
        )
        console.print(
            f"dashboard: [bold]{stack.http_url}/ui[/bold] (sign in with the API key below)"
        )
        console.print(
            "metrics: " + ", ".join(f"{name} {stack.metrics_url(name)}" for name in stack.processes)
        )
        if args.command == "run":
            return run_demo(stack, args.n)
        # Printed to stdout (the rest goes to stderr) so scripts can capture it.
        console.print("admin API key (send `Authorization: Bearer <key>`):")
        print(stack.api_key, flush=True)
        # From here Ctrl-C stops the stack like SIGTERM (the services get the
        # terminal's SIGINT too, and stop on their own).
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        stack.supervise(stopping, report=lambda line: console.print(f"[yellow]{line}[/yellow]"))
        return 0
    finally:
        console.print("stopping the stack ...")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
