"""Consumes the worker's queues: claim in batches, run handlers, report in batches.

Per received batch, each message on its own: an undecodable message (or one
whose ids or numbers are out of range) is dead-lettered alone; a task type
no loaded app defines is handed back for a worker that knows it, and
dead-lettered after WORKER_UNKNOWN_TASK_DELIVERIES deliveries. The rest are
claimed in one call; if the state service refuses the batch as invalid, the
messages are claimed one by one so that only the bad one is dead-lettered. A
refused claim is a duplicate or stale delivery (the task moved on): its
message is completed and nothing runs. Granted tasks run concurrently (up to
`concurrency`); their outcomes are reported by a completion loop in batches.
Leases and broker locks are renewed by the lease loop (leases.py), which also
enforces heartbeat timeouts and passes on cancellations.

On shutdown the worker stops receiving, lets running tasks finish within a
grace period, then releases the rest (state: queued again, same attempt;
broker: abandoned) so another worker picks them up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import logging
import time
from collections import Counter as Tally
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from coremachine.app import PermanentError, TaskContext, TaskType
from coremachine.app._errors import is_retryable
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.inflight import InFlight
from coremachine.services.worker.leases import LeaseKeeper
from coremachine.services.worker.metrics import WorkerMetrics
from coremachine.services.worker.previous_results import PreviousResults
from coremachine.services.worker.runtime import WorkerRuntime
from coremachine.shared import tracing
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker, LockLostError, ReceivedMessage
from coremachine.shared.consuming import receive_or_stop
from coremachine.shared.domain.tasks import (
    ClaimResult,
    OutcomeAck,
    TaskClaim,
    TaskLease,
    TaskOutcome,
)
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.logging_setup import log_context
from coremachine.shared.messages import TaskMessage
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0
RECEIVE_BACKOFF_MAX = 10.0
UNKNOWN_TASK_DELAY_MAX = 30.0


class TaskConsumer:
    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        state: StateClient,
        handlers: dict[str, TaskType],
        *,
        worker_id: str,
        concurrency: int,
        receive_batch: int,
        completion_batch: int,
        lease_seconds: int,
        lock_seconds: float,
        shutdown_grace: float,
        blobs: BlobStore,
        payloads: TaskPayloads,
        threads: int = 32,
        unknown_task_deliveries: int = 5,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.metrics = metrics or WorkerMetrics()
        self.broker = broker
        self.queues = list(queues)
        self.state = state
        self.handlers = handlers
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.receive_batch = receive_batch
        self.completion_batch = completion_batch
        self.lease_seconds = lease_seconds
        self.shutdown_grace = shutdown_grace
        self.blobs = blobs
        self.payloads = payloads
        self.unknown_task_deliveries = unknown_task_deliveries
        self.in_flight: set[InFlight] = set()
        self._by_task: dict[str, InFlight] = {}
        self._outcomes: asyncio.Queue[InFlight] = asyncio.Queue()
        self._slot_free = asyncio.Event()
        self._give_up_reporting_at: float | None = None
        self.runtime = WorkerRuntime(state, self._lease_of)
        self.previous = PreviousResults(state, payloads)
        self.leases = LeaseKeeper(
            state,
            broker,
            self.runtime,
            lease_seconds=lease_seconds,
            interval=max(0.5, min(lease_seconds, lock_seconds) / 3),
            running=self._running,
            time_out=self._time_out,
        )
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task")

    def _lease_of(self, task_id: str) -> str | None:
        entry = self._by_task.get(task_id)
        return entry.lease_token if entry is not None and entry.running else None

    def _running(self) -> list[InFlight]:
        return [e for e in self.in_flight if e.running]

    # -- main loop -------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        done = asyncio.Event()
        helpers = [
            asyncio.create_task(self._report_loop(done)),
            asyncio.create_task(self.leases.run(done)),
            asyncio.create_task(self.runtime.run(done)),
        ]
        try:
            await asyncio.gather(*(self._receive_loop(q, stopping) for q in self.queues))
        finally:
            await self._drain()
            done.set()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _receive_loop(self, queue: str, stopping: asyncio.Event) -> None:
        backoff = RETRY_DELAY
        while not stopping.is_set():
            free = self.concurrency - len(self.in_flight)
            if free <= 0:
                self._slot_free.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_free.wait(), 1.0)
                continue
            try:
                messages = await receive_or_stop(
                    self.broker, queue, min(free, self.receive_batch), 1.0, stopping
                )
            except Exception:
                log.exception("receiving from %s failed; retrying in %.1fs", queue, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, RECEIVE_BACKOFF_MAX)
                continue
            backoff = RETRY_DELAY
            if messages:
                try:
                    await self._dispatch(messages)
                except Exception:  # every path below settles; belt and braces
                    log.exception("dispatching a batch of %s failed", queue)

    # -- dispatch: decode, route, claim ----------------------------------------

    async def _dispatch(self, messages: list[ReceivedMessage]) -> None:
        runnable: list[tuple[ReceivedMessage, TaskMessage]] = []
        for message in messages:
            try:
                decoded = TaskMessage.model_validate_json(message.body)
            except (ValidationError, ValueError) as exc:
                await self._dead_letter(message, "UndecodableBody", _short(exc))
                continue
            if decoded.task_type not in self.handlers:
                await self._unknown_task_type(message, decoded)
                continue
            runnable.append((message, decoded))
        if not runnable:
            return
        queue = runnable[0][0].queue
        # A batch of claims (many jobs' tasks): its own span, linked to each message's publisher.
        with tracing.span(
            f"receive {queue}",
            kind=SpanKind.CONSUMER,
            attributes=tracing.messaging_attributes("receive", queue, len(runnable))
            if tracing.enabled()
            else None,
            links=tracing.links_to([m.properties.get(tracing.TRACEPARENT) for m, _ in runnable])
            if tracing.enabled()
            else (),
        ):
            started = time.perf_counter()
            results = await self._claim(runnable)
            self.metrics.claim_latency.labels(queue).observe(time.perf_counter() - started)
        now = dt.datetime.now(dt.UTC)
        duplicates = []
        started_tasks: Tally[tuple[str, ...]] = Tally()
        for (message, decoded), result in zip(runnable, results, strict=True):
            if result is None:
                continue  # settled by _claim
            if result.task is not None:
                task = result.task
                started_tasks[(task.job_type, task.task_type, message.queue)] += 1
                self.metrics.child(self.metrics.queue_wait, task.task_type, message.queue).observe(
                    max((now - message.enqueued_at).total_seconds(), 0.0)
                )
                self._start(InFlight(message, task))
            elif result.reason == "unknown_task":
                await self._dead_letter(message, "UnknownTask", f"no task {decoded.task_id}")
            else:
                # A duplicate or stale delivery, or a task the state service
                # holds for a flow limit (it sends the task again when it may
                # start): either way this message is done.
                log.log(
                    logging.DEBUG if result.reason.startswith("held:") else logging.INFO,
                    "dropping %s delivery of %s: %s",
                    message.message_id,
                    decoded.task_id,
                    result.reason,
                )
                duplicates.append(message)
        self.metrics.add(self.metrics.started, started_tasks)
        await self._settle(self.broker.complete(duplicates))

    async def _claim(
        self, runnable: list[tuple[ReceivedMessage, TaskMessage]]
    ) -> list[ClaimResult | None]:
        """Claim results in order; None for a message already settled here."""
        claims = [TaskClaim(d.task_id, d.attempt) for _, d in runnable]
        try:
            return list(await self.state.claim_tasks(self.worker_id, self.lease_seconds, claims))
        except InvalidArgument as exc:
            if len(runnable) == 1:
                await self._dead_letter(runnable[0][0], "Rejected", str(exc))
                return [None]
            # Some message of the batch holds what the state service refuses:
            # claim them one by one, so that its batch-mates still run.
            log.warning("the batch's claim was refused (%s); claiming one by one", exc)
            results: list[ClaimResult | None] = []
            for pair in runnable:
                results += await self._claim([pair])
            return results
        except Exception as exc:
            log.warning("claiming failed (%s); messages will be redelivered", _short(exc))
            # Growing delays: an outage of the state service must not use up
            # healthy messages' deliveries (dead-lettered, their tasks wedged).
            tries = max(m.delivery_count for m, _ in runnable)
            delay = min(RETRY_DELAY * 2 ** (tries - 1), UNKNOWN_TASK_DELAY_MAX)
            await self._settle(self.broker.abandon([m for m, _ in runnable], delay=delay))
            return [None] * len(runnable)

    async def _unknown_task_type(self, message: ReceivedMessage, decoded: TaskMessage) -> None:
        """Another worker of this queue may run it (a rolling deploy): hand it
        back a few times, with a growing delay, before dead-lettering it."""
        if message.delivery_count >= self.unknown_task_deliveries:
            await self._dead_letter(
                message,
                "UnknownTaskType",
                f"no app loaded by the workers of queue {message.queue!r} defines task type"
                f" {decoded.task_type!r} (delivered {message.delivery_count} times)",
            )
            return
        delay = min(RETRY_DELAY * 2**message.delivery_count, UNKNOWN_TASK_DELAY_MAX)
        log.warning(
            "task type %r is not run here; handing %s back (in %.0fs)",
            decoded.task_type,
            message.message_id,
            delay,
        )
        await self._settle(self.broker.abandon([message], delay=delay))

    # -- execution -------------------------------------------------------------

    def _start(self, entry: InFlight) -> None:
        entry.last_heartbeat = asyncio.get_running_loop().time()
        self.in_flight.add(entry)
        self._by_task[entry.task_id] = entry
        entry.runner = asyncio.create_task(self._execute(entry))

    async def _execute(self, entry: InFlight) -> None:
        task = entry.task
        started = time.perf_counter()
        with (
            log_context(job_id=task.job_id, task_id=task.task_id),
            self._attempt_span(entry) as span,
        ):
            if span is not None:
                entry.trace_context = tracing.current_traceparent()
            try:
                outcome = await self._attempt(entry)
            except asyncio.CancelledError:
                if entry.outcome is not None:
                    self._observe_attempt(entry, span, started)
                    return  # timed out by the lease loop, which reported it
                raise
            if entry.outcome is None:
                self._finish(entry, outcome)
            self._observe_attempt(entry, span, started)

    def _attempt_span(self, entry: InFlight) -> contextlib.AbstractContextManager[Any]:
        """The attempt's span, continuing the trace its message carries; the
        handler's own spans nest under it (sync handlers too: they run in a
        copy of this context)."""
        if not tracing.enabled():
            return contextlib.nullcontext(None)
        task, message = entry.task, entry.message
        # Few attributes: each costs on every attempt (the worker's id is the
        # resource's service.instance.id).
        attributes = {
            **tracing.messaging_attributes("process", message.queue),
            "messaging.message.id": message.message_id,
            "coremachine.job.id": task.job_id,
            "coremachine.job.type": task.job_type,
            "coremachine.task.id": task.task_id,
            "coremachine.task.type": task.task_type,
            "coremachine.task.index": task.task_index,
            "coremachine.task.attempt": task.attempt,
            "coremachine.stage": task.stage,
        }
        if tracing.record_parameters():
            attributes["coremachine.task.parameters"] = task.parameters_json[:4096].decode(
                errors="replace"
            )
        return tracing.span(
            f"run {task.task_type}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            parent_ctx=tracing.context_of_message(message.properties),
        )

    def _observe_attempt(self, entry: InFlight, span: Any, started: float) -> None:
        task, queue = entry.task, entry.message.queue
        self.metrics.child(self.metrics.duration, task.job_type, task.task_type, queue).observe(
            time.perf_counter() - started
        )
        if span is None or entry.outcome is None:
            return
        outcome = entry.outcome
        span.set_attribute(
            "coremachine.task.outcome",
            "succeeded"
            if outcome.succeeded
            else "failed"
            if outcome.retryable
            else "failed_permanently",
        )
        if not outcome.succeeded:
            span.set_status(Status(StatusCode.ERROR, outcome.error[:500]))

    async def _attempt(self, entry: InFlight) -> TaskOutcome:
        task = entry.task
        handler = self.handlers[task.task_type]
        try:
            # Claim check both ways: referenced parameters are fetched before
            # the handler runs, a large result is stored and reported by reference.
            params = await self.payloads.load(task.parameters_json)
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise PermanentError("the task's parameters are not a JSON object")
            previous = (
                await self.previous.of(task.job_id, task.stage - 1)
                if task.previous_results
                else None
            )
            ctx = TaskContext(
                job_id=task.job_id,
                task_id=task.task_id,
                job_type=task.job_type,
                task_type=task.task_type,
                stage=task.stage,
                task_index=task.task_index,
                attempt=task.attempt,
                queue=task.queue,
                blobs=self.blobs,
                _previous=previous,
                _runtime=self.runtime,
                _cancel=entry.cancel,
            )
            run = self._invoke(handler, params, ctx)
            if task.task_timeout_ms:
                try:
                    result = await asyncio.wait_for(run, task.task_timeout_ms / 1000)
                except TimeoutError:
                    raise TaskTimeout(
                        f"the task ran longer than its timeout ({task.task_timeout_ms / 1000:g}s)"
                    ) from None
            else:
                result = await run
            return TaskOutcome(
                task.task_id,
                task.lease_token,
                True,
                result_json=await self.payloads.store_result(
                    result, job_id=task.job_id, stage=task.stage, task_index=task.task_index
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retryable = is_retryable(exc)
            log.warning("task failed (attempt %d, retryable=%s): %r", task.attempt, retryable, exc)
            return TaskOutcome(
                task.task_id,
                task.lease_token,
                False,
                error=f"{type(exc).__name__}: {exc}",
                retryable=retryable,
            )

    async def _invoke(self, handler: TaskType, params: dict[str, Any], ctx: TaskContext) -> Any:
        """Async handlers run on the loop; plain functions on the worker's threads
        (they may block), with the log context of the task."""
        if handler.is_async:
            return await handler.invoke(params, ctx)
        call = functools.partial(contextvars.copy_context().run, handler.invoke, params, ctx)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _finish(self, entry: InFlight, outcome: TaskOutcome) -> None:
        if tracing.enabled() and not outcome.trace_context:
            # The attempt's span (current here, or in _time_out the entry's).
            traceparent = entry.trace_context or tracing.current_traceparent()
            if traceparent:
                outcome = dataclasses.replace(outcome, trace_context=traceparent)
        entry.outcome = outcome
        self._outcomes.put_nowait(entry)

    def _time_out(self, entry: InFlight, reason: str) -> None:
        """The lease loop gave up on a running task (no heartbeat): report it as
        a retryable failure now, and stop its handler if it is async."""
        if entry.outcome is not None:
            return
        log.warning("task %s: %s", entry.task_id, reason)
        self._finish(
            entry,
            TaskOutcome(entry.task_id, entry.lease_token, False, error=reason, retryable=True),
        )
        if entry.runner is not None and self.handlers[entry.task.task_type].is_async:
            entry.runner.cancel()

    # -- reporting -------------------------------------------------------------

    async def _report_loop(self, done: asyncio.Event) -> None:
        while not (done.is_set() and self._outcomes.empty()):
            try:
                first = await asyncio.wait_for(self._outcomes.get(), 0.2)
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < self.completion_batch and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                await self._report(batch)
            except Exception:  # _report retries what can be retried; never lose the loop
                log.exception("reporting a batch of %d outcomes failed", len(batch))
                self._release_slots(batch)

    async def _report(self, batch: list[InFlight]) -> None:
        outcomes = [e.outcome for e in batch if e.outcome is not None]
        final = self.runtime.take_final({e.task_id: e.lease_token for e in batch})
        if final:
            try:
                await self.state.report_progress(final)
            except Exception as exc:  # informational: the outcome matters more
                log.warning("reporting the last progress failed: %s", _short(exc))
        delay = 0.2
        while True:
            try:
                started = time.perf_counter()
                # A batch of many jobs' outcomes: its own span, linked to each attempt.
                with tracing.span(
                    "report outcomes",
                    kind=SpanKind.CLIENT,
                    attributes={"coremachine.outcomes": len(outcomes)}
                    if tracing.enabled()
                    else None,
                    links=tracing.links_to([o.trace_context for o in outcomes])
                    if tracing.enabled()
                    else (),
                ):
                    acks = await self.state.complete_tasks(outcomes)
                self.metrics.report_latency.observe(time.perf_counter() - started)
                break
            except InvalidArgument as exc:
                await self._report_refused(batch, exc)
                return
            except Exception as exc:
                # The outcome is kept and re-sent: if the state service
                # committed before failing, the re-send is rejected as stale
                # (lease token already cleared), so nothing counts twice.
                if self._give_up_reporting_at is not None and (
                    asyncio.get_running_loop().time() > self._give_up_reporting_at
                ):
                    # Shutting down with the state service gone: the leases
                    # expire and the janitor re-queues these tasks.
                    log.error("state unavailable at shutdown; %d outcomes not reported", len(batch))
                    self._release_slots(batch)
                    return
                log.warning("reporting outcomes failed (%s); retrying", _short(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._count(batch, acks)
        stale = [a.task_id for a in acks if not a.accepted]
        if stale:
            log.info("state rejected stale outcomes for %s", stale[:10])
        self._release_slots(batch)
        await self._settle(self.broker.complete([e.message for e in batch]))

    async def _report_refused(self, batch: list[InFlight], exc: InvalidArgument) -> None:
        """An outcome the state service refuses (e.g. a result PostgreSQL
        cannot store): report the others, and that task as failed for good."""
        if len(batch) > 1:
            for entry in batch:
                await self._report([entry])
            return
        [entry] = batch
        assert entry.outcome is not None
        if entry.outcome.succeeded:
            entry.outcome = TaskOutcome(
                entry.task_id,
                entry.lease_token,
                False,
                error=f"the task's result was refused: {exc}",
                retryable=False,
            )
            await self._report([entry])
            return
        log.error("the state service refused the outcome of %s: %s", entry.task_id, exc)
        self._release_slots(batch)
        await self._settle(self.broker.complete([entry.message]))

    def _count(self, batch: list[InFlight], acks: Sequence[OutcomeAck]) -> None:
        by_task = {e.task_id: e for e in batch}
        tallies: dict[str, Tally[tuple[str, ...]]] = {
            "completed": Tally(),
            "failed": Tally(),
            "retrying": Tally(),
            "stale": Tally(),
        }
        for ack in acks:
            entry = by_task.get(ack.task_id)
            if entry is None:
                continue
            queue = entry.message.queue
            if not ack.accepted:
                tallies["stale"][(queue,)] += 1
            elif ack.task_status in tallies:
                tallies[ack.task_status][(entry.task.job_type, entry.task.task_type, queue)] += 1
        metrics = self.metrics
        metrics.add(metrics.completed, tallies["completed"])
        metrics.add(metrics.failed, tallies["failed"])
        metrics.add(metrics.retried, tallies["retrying"])
        metrics.add(metrics.stale, tallies["stale"])

    def _release_slots(self, batch: list[InFlight]) -> None:
        for entry in batch:
            self.runtime.forget(entry.task_id)
            self.in_flight.discard(entry)
            if self._by_task.get(entry.task_id) is entry:
                del self._by_task[entry.task_id]
        self._slot_free.set()

    # -- shutdown --------------------------------------------------------------

    async def _drain(self) -> None:
        self._give_up_reporting_at = asyncio.get_running_loop().time() + self.shutdown_grace + 5
        runners = [e.runner for e in self.in_flight if e.runner and not e.runner.done()]
        if runners:
            log.info("waiting up to %.0fs for %d running tasks", self.shutdown_grace, len(runners))
            await asyncio.wait(runners, timeout=self.shutdown_grace)
        unfinished = [e for e in self.in_flight if e.outcome is None]
        for e in unfinished:
            if e.runner:
                e.runner.cancel()
        if not unfinished:
            return
        with contextlib.suppress(Exception):
            await self.state.release_tasks(
                [TaskLease(e.task_id, e.lease_token) for e in unfinished]
            )
        await self._settle(self.broker.abandon([e.message for e in unfinished]))
        log.info("released %d unfinished tasks", len(unfinished))

    # -- helpers ---------------------------------------------------------------

    async def _dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        log.error("dead-lettering %s: %s %s", message.message_id, reason, description)
        self.metrics.dead_lettered.labels(message.queue, reason).inc()
        await self._settle(self.broker.dead_letter(message, reason, description))

    async def _settle(self, settlement) -> None:
        try:
            await settlement
        except LockLostError as exc:
            log.warning("settling failed, lock lost: %s", exc)
        except Exception:
            log.exception("settling messages failed")


class TaskTimeout(Exception):
    """An attempt ran past its stage's timeout (retryable)."""


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
