"""Consumes the tasks queue: claim in batches, run handlers, report in batches.

Per received batch: undecodable messages and unknown task types are
dead-lettered; the rest are claimed in one ClaimTasks call. A refused claim is
a duplicate or stale delivery (the task moved on): its message is completed
and nothing runs. Granted tasks run concurrently (up to `concurrency`); their
outcomes are reported by a completion loop in batches (one CompleteTasks call,
one broker settlement). Leases and broker locks are renewed by a heartbeat.

On shutdown the worker stops receiving, lets running tasks finish within a
grace period, then releases the rest (state: queued again, same attempt;
broker: abandoned) so another worker picks them up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc
from pydantic import ValidationError

from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.context import TaskContext
from coremachine.services.worker.registry import Handler, run_handler
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker, LockLostError, ReceivedMessage
from coremachine.shared.logging_setup import log_context
from coremachine.shared.messages import TaskMessage
from coremachine.shared.task_errors import is_retryable
from coremachine.state.v1 import state_pb2, state_pb2_grpc

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0


@dataclass(eq=False)
class InFlight:
    message: ReceivedMessage
    task_id: str
    lease_token: str
    runner: asyncio.Task[None] | None = None
    outcome: state_pb2.TaskOutcome | None = field(default=None)


class TaskConsumer:
    def __init__(
        self,
        broker: Broker,
        queue: str,
        state: state_pb2_grpc.StateServiceStub,
        handlers: dict[str, Handler],
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
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.state = state
        self.handlers = handlers
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.receive_batch = receive_batch
        self.completion_batch = completion_batch
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = max(0.5, min(lease_seconds, lock_seconds) / 3)
        self.shutdown_grace = shutdown_grace
        self.blobs = blobs
        self.payloads = payloads
        self.in_flight: set[InFlight] = set()
        self._outcomes: asyncio.Queue[InFlight] = asyncio.Queue()
        self._slot_free = asyncio.Event()
        self._give_up_reporting_at: float | None = None

    # -- main loop -------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        done = asyncio.Event()
        reporter = asyncio.create_task(self._report_loop(done))
        heartbeat = asyncio.create_task(self._heartbeat_loop(done))
        try:
            while not stopping.is_set():
                free = self.concurrency - len(self.in_flight)
                if free <= 0:
                    self._slot_free.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_free.wait(), 1.0)
                    continue
                try:
                    messages = await self.broker.receive(
                        self.queue, min(free, self.receive_batch), max_wait=1.0
                    )
                except Exception:
                    log.exception("receiving from %s failed", self.queue)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                if messages:
                    await self._dispatch(messages)
        finally:
            await self._drain()
            done.set()
            await asyncio.gather(reporter, heartbeat, return_exceptions=True)

    async def _dispatch(self, messages: list[ReceivedMessage]) -> None:
        runnable: list[tuple[ReceivedMessage, TaskMessage]] = []
        for message in messages:
            try:
                decoded = TaskMessage.model_validate_json(message.body)
            except ValidationError as exc:
                await self._dead_letter(message, "UndecodableBody", str(exc)[:1000])
                continue
            if decoded.task_type not in self.handlers:
                await self._dead_letter(
                    message, "UnknownTaskType", f"no handler for {decoded.task_type!r}"
                )
                continue
            runnable.append((message, decoded))
        if not runnable:
            return
        try:
            response = await self.state.ClaimTasks(
                state_pb2.ClaimTasksRequest(
                    worker_id=self.worker_id,
                    lease_seconds=self.lease_seconds,
                    claims=[
                        state_pb2.TaskClaim(task_id=d.task_id, attempt=d.attempt)
                        for _, d in runnable
                    ],
                )
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("claiming failed (%s); messages will be redelivered", exc.code().name)
            await self._settle(self.broker.abandon([m for m, _ in runnable], delay=RETRY_DELAY))
            return
        duplicates = []
        for (message, decoded), result in zip(runnable, response.results, strict=True):
            if result.granted:
                entry = InFlight(message, decoded.task_id, result.lease_token)
                self.in_flight.add(entry)
                entry.runner = asyncio.create_task(self._execute(entry, result.task))
            elif result.reason == "unknown_task":
                await self._dead_letter(message, "UnknownTask", f"no task {decoded.task_id}")
            else:
                log.info(
                    "dropping %s delivery of %s: %s",
                    message.message_id,
                    decoded.task_id,
                    result.reason,
                )
                duplicates.append(message)
        await self._settle(self.broker.complete(duplicates))

    async def _execute(self, entry: InFlight, task) -> None:
        with log_context(job_id=task.job_id, task_id=task.task_id):
            ctx = TaskContext(
                task.task_id,
                task.job_id,
                task.job_type,
                task.stage,
                task.task_index,
                task.attempt,
                self.state,
                self.blobs,
                self.payloads,
            )
            try:
                # Claim check both ways: referenced parameters are fetched before
                # the handler runs, a large result is stored and reported by reference.
                params = await self.payloads.load(task.parameters_json) or {}
                result = await run_handler(self.handlers[task.task_type], params, ctx)
                outcome = state_pb2.TaskOutcome(
                    task_id=task.task_id,
                    lease_token=entry.lease_token,
                    succeeded=True,
                    result_json=await self.payloads.store_result(
                        result, job_id=task.job_id, stage=task.stage, task_index=task.task_index
                    ),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retryable = is_retryable(exc)
                log.warning(
                    "task failed (attempt %d, retryable=%s): %r", task.attempt, retryable, exc
                )
                outcome = state_pb2.TaskOutcome(
                    task_id=task.task_id,
                    lease_token=entry.lease_token,
                    succeeded=False,
                    error=f"{type(exc).__name__}: {exc}",
                    retryable=retryable,
                )
            entry.outcome = outcome
            await self._outcomes.put(entry)

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
            await self._report(batch)

    async def _report(self, batch: list[InFlight]) -> None:
        request = state_pb2.CompleteTasksRequest(outcomes=[e.outcome for e in batch if e.outcome])
        delay = 0.2
        while True:
            try:
                response = await self.state.CompleteTasks(request)
                break
            except grpc.aio.AioRpcError as exc:
                # The outcome is kept and re-sent: if the state service
                # committed before failing, the re-send is rejected as stale
                # (lease token already cleared), so nothing counts twice.
                if self._give_up_reporting_at is not None and (
                    asyncio.get_running_loop().time() > self._give_up_reporting_at
                ):
                    # Shutting down with the state service gone: the leases
                    # expire and the janitor re-queues these tasks.
                    log.error("state unavailable at shutdown; %d outcomes not reported", len(batch))
                    for entry in batch:
                        self.in_flight.discard(entry)
                    return
                log.warning("reporting outcomes failed (%s); retrying", exc.code().name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        stale = [r.task_id for r in response.results if not r.accepted]
        if stale:
            log.info("state rejected stale outcomes for %s", stale[:10])
        for entry in batch:
            self.in_flight.discard(entry)
        self._slot_free.set()
        await self._settle(self.broker.complete([e.message for e in batch]))

    # -- heartbeat -------------------------------------------------------------

    async def _heartbeat_loop(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.heartbeat_interval)
            running = [e for e in self.in_flight if e.outcome is None]
            if not running:
                continue
            try:
                response = await self.state.RenewLeases(
                    state_pb2.RenewLeasesRequest(
                        lease_seconds=self.lease_seconds,
                        leases=[
                            state_pb2.TaskLease(task_id=e.task_id, lease_token=e.lease_token)
                            for e in running
                        ],
                    )
                )
                if response.lost:
                    log.warning("leases lost for %s", list(response.lost)[:10])
            except grpc.aio.AioRpcError as exc:
                log.warning("renewing leases failed: %s", exc.code().name)
            try:
                renewed = await self.broker.renew_locks([e.message for e in running])
                by_token = {m.lock_token: m for m in renewed}
                for e in running:
                    e.message = by_token.get(e.message.lock_token, e.message)
            except Exception:
                log.exception("renewing message locks failed")

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
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.state.ReleaseTasks(
                state_pb2.ReleaseTasksRequest(
                    leases=[
                        state_pb2.TaskLease(task_id=e.task_id, lease_token=e.lease_token)
                        for e in unfinished
                    ]
                )
            )
        await self._settle(self.broker.abandon([e.message for e in unfinished]))
        log.info("released %d unfinished tasks", len(unfinished))

    # -- helpers ---------------------------------------------------------------

    async def _dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        log.error("dead-lettering %s: %s %s", message.message_id, reason, description)
        await self._settle(self.broker.dead_letter(message, reason, description))

    async def _settle(self, settlement) -> None:
        try:
            await settlement
        except LockLostError as exc:
            log.warning("settling failed, lock lost: %s", exc)
        except Exception:
            log.exception("settling messages failed")
