"""`python -m bench.telemetry_overhead`: what tracing costs a worker per task, in process.

Runs the worker's consumer on the in-memory broker and state client (no
I/O: the instrumentation is all that differs) over N no-op tasks, with
tracing off (no exporter configured: the default) and on (the SDK, a batch
span processor and an exporter that drops what it gets, standing in for
OTLP), and reports microseconds per task for each, the difference, and the
cost of the primitives the hot path calls when tracing is off. Metrics
(prometheus-client) are on in both runs, as in production. The stack-level
figures come from `make bench`; this isolates the per-task cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from coremachine.app import App
from coremachine.app._registry import Registry
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import TaskConsumer
from coremachine.services.worker.metrics import WorkerMetrics
from coremachine.shared import tracing
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.memory import MemoryBroker
from coremachine.shared.domain.jobs import NewJob, NewTask, StagePlan, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.messages import TaskMessage
from coremachine.shared.state_clients.memory import InMemoryStateClient

JOB_ID = "b" * 64


async def noop(params: dict[str, Any]) -> dict[str, Any]:
    return {}


async def run_tasks(n: int) -> float:
    """Seconds to run n no-op tasks through the consumer (claim, run, report)."""
    broker = MemoryBroker(lock_duration=60)
    state = InMemoryStateClient()
    app = App("bench")
    app.task("noop_task")(noop)
    consumer = TaskConsumer(
        broker,
        ["tasks"],
        state,
        Registry([app]).handlers(),
        worker_id="bench",
        concurrency=256,
        receive_batch=128,
        completion_batch=256,
        lease_seconds=60,
        lock_seconds=60,
        shutdown_grace=1,
        blobs=MemoryBlobStore(),
        payloads=TaskPayloads(MemoryBlobStore()),
        metrics=WorkerMetrics(),
    )
    tasks = tuple(NewTask(i, "noop_task", b"{}") for i in range(n))
    policy = StagePolicy(RetryPolicy(max_attempts=1, backoff_base_ms=1, backoff_max_ms=1))
    await state.create_job(
        NewJob(
            JOB_ID, "bench", b"{}", 1, first_stage=StagePlan(n, tasks, policy), default_result=True
        )
    )
    sent, state.sent = state.sent, []
    headers = tracing.message_headers()
    await broker.send(
        "tasks",
        [
            OutgoingMessage(
                f"{m.task_id}:{m.attempt}",
                TaskMessage(task_id=m.task_id, job_id=JOB_ID, task_type="noop_task", attempt=1)
                .model_dump_json()
                .encode(),
                headers,
            )
            for m in sent
            if m.kind == "task"
        ],
    )
    stopping = asyncio.Event()
    started = time.perf_counter()
    runner = asyncio.create_task(consumer.run(stopping))
    await broker.join("tasks", timeout=600)
    elapsed = time.perf_counter() - started
    stopping.set()
    await runner
    return elapsed


class _Drop:
    """A span exporter that drops everything (the export itself is not measured)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def tracing_on() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))  # type: ignore[arg-type]
    tracing.STATE.provider = provider
    tracing.STATE.tracer = provider.get_tracer("bench")
    tracing.STATE.on = True


def primitive_ns(repeat: int = 200_000) -> dict[str, float]:
    """ns per call of what the hot path calls when tracing is off."""
    out = {}
    metrics = WorkerMetrics()
    labels = ("bench", "noop_task", "tasks")
    for name, call in {
        "counter.labels(...).inc()": lambda: metrics.completed.labels(*labels).inc(),
        "histogram.labels(...).observe()": lambda: metrics.duration.labels(*labels).observe(0.01),
        "tracing.enabled()": tracing.enabled,
        "tracing.message_headers()": tracing.message_headers,
        "with tracing.span(...)": lambda: tracing.span("x").__enter__(),
    }.items():
        started = time.perf_counter()
        for _ in range(repeat):
            call()
        out[name] = (time.perf_counter() - started) / repeat * 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_overhead")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    primitives = primitive_ns()
    tracing_on()
    asyncio.run(run_tasks(1000))  # warm-up, both ways
    off: list[float] = []
    on: list[float] = []
    # Interleaved, so that a machine shared with other work slows both alike;
    # the best round of each is the least disturbed.
    for _ in range(args.rounds):
        tracing.STATE.on = False
        off.append(asyncio.run(run_tasks(args.tasks)))
        tracing.STATE.on = True
        on.append(asyncio.run(run_tasks(args.tasks)))
    per_task = {
        "off_us": min(off) / args.tasks * 1e6,
        "on_us": min(on) / args.tasks * 1e6,
        "off_median_us": statistics.median(off) / args.tasks * 1e6,
        "on_median_us": statistics.median(on) / args.tasks * 1e6,
    }
    per_task["tracing_cost_us"] = per_task["on_us"] - per_task["off_us"]
    print(
        json.dumps(
            {
                "tasks": args.tasks,
                "rounds": args.rounds,
                "per_task": {k: round(v, 2) for k, v in per_task.items()},
                "primitives_off_ns": {k: round(v, 1) for k, v in primitives.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
