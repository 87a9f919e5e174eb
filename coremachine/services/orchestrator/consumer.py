"""Consumes the jobs queue: "stage ready" -> plan the stage; "finalize" -> aggregate.

Settlement rules, per message (a batch's messages never share a fate):
- success, or a planning error that fails the job -> complete;
- a message for a definition this orchestrator does not serve (a rolling
  deploy) -> handed to the state service, which sends it on to an
  orchestrator that serves it or parks it until one registers -> complete;
- undecodable, or fields out of range -> dead-letter "UndecodableBody";
  a job type no loaded app defines (and no definition to route by) ->
  "UnknownJobType"; a job the state service does not know -> "UnknownJob";
  a request the state service refuses as invalid -> "Rejected";
- anything transient (state unavailable, blob store down, an unexpected
  error) -> abandon with a delay, so the broker redelivers it and
  dead-letters it after its max delivery count.
Nothing a message holds can make the consumer loop raise.

Messages are handled concurrently (up to ORCHESTRATOR_CONCURRENCY), each
keeping its broker lock while it runs (shared/consuming.MessageLock): planning
a million-task stage takes minutes, and neither holds up other jobs' messages
nor lets its own lapse and be planned a second time beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from coremachine.app import JobType, PreviousResult
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.metrics import OrchestratorMetrics
from coremachine.services.orchestrator.planner import Planner, PlanningError
from coremachine.shared import tracing
from coremachine.shared.broker import Broker, LockLostError, ReceivedMessage
from coremachine.shared.consuming import MessageLock, receive_or_stop
from coremachine.shared.errors import InvalidArgument, NotFound
from coremachine.shared.logging_setup import log_context
from coremachine.shared.messages import FinalizeJob, StageReady, job_message_adapter
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)

TRANSIENT_RETRY_DELAY = 2.0
RECEIVE_BACKOFF_MAX = 10.0
# How long a batch's handlers have the loop before it receives again.
HANDLE_FIRST_SECONDS = 0.05


class JobsConsumer:
    def __init__(
        self,
        broker: Broker,
        queue: str,
        state: StateClient,
        registry: Registry,
        planner: Planner,
        *,
        orchestrator_id: str,
        batch_size: int = 16,
        concurrency: int = 64,
        drain_seconds: float = 10.0,
        metrics: OrchestratorMetrics | None = None,
    ) -> None:
        self.metrics = metrics or planner.metrics
        self.broker = broker
        self.queue = queue
        self.state = state
        self.registry = registry
        self.planner = planner
        self.orchestrator_id = orchestrator_id
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds

    async def run(self, stopping: asyncio.Event) -> None:
        """Receives while fewer than `concurrency` messages are in hand and
        handles each as a task of its own: a stage that takes minutes to plan
        holds one slot, not the queue, so the other jobs advance meanwhile.
        On stopping, what is in hand gets `drain_seconds` to finish; the rest
        is cancelled and its messages handed back (handling is idempotent)."""
        in_flight: set[asyncio.Task[None]] = set()
        slot_free = asyncio.Event()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slot_free.set()
            if not task.cancelled() and task.exception() is not None:  # handle() catches
                log.error("handling a message raised", exc_info=task.exception())

        backoff = 0.5
        try:
            while not stopping.is_set():
                free = self.concurrency - len(in_flight)
                if free <= 0:
                    slot_free.clear()
                    await _wait_any(stopping, slot_free, 1.0)
                    continue
                try:
                    messages = await receive_or_stop(
                        self.broker, self.queue, min(free, self.batch_size), 1.0, stopping
                    )
                except Exception:
                    log.exception(
                        "receiving from %s failed; retrying in %.1fs", self.queue, backoff
                    )
                    await _wait(stopping, backoff)
                    backoff = min(backoff * 2, RECEIVE_BACKOFF_MAX)
                    continue
                backoff = 0.5
                batch = [asyncio.create_task(self.handle(m)) for m in messages]
                for task in batch:
                    in_flight.add(task)
                    task.add_done_callback(finished)
                if batch:
                    # The batch's handlers first: a receive beside them costs
                    # them CPU (a stage of one task plans in milliseconds);
                    # one that runs longer leaves the loop to the other jobs.
                    await asyncio.wait(batch, timeout=HANDLE_FIRST_SECONDS)
        finally:
            if in_flight:
                _, unfinished = await asyncio.wait(set(in_flight), timeout=self.drain_seconds)
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)

    async def handle(self, message: ReceivedMessage) -> None:
        try:
            decoded = job_message_adapter.validate_json(message.body)
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(message, "UndecodableBody", _short(exc))
            return
        with log_context(job_id=decoded.job_id), self._span(message, decoded):
            async with MessageLock(self.broker, message) as lock:
                try:
                    await self._route(lock, decoded)
                except asyncio.CancelledError:
                    # Stopping mid-handling: the message goes back now, not
                    # when its lock lapses, so another orchestrator takes it.
                    with contextlib.suppress(Exception):
                        await self.broker.abandon([lock.message])
                    raise
                except Exception:
                    log.exception("unexpected failure handling %s; will retry", message.message_id)
                    await self._settle(
                        self.broker.abandon([lock.message], delay=TRANSIENT_RETRY_DELAY)
                    )

    def _span(self, message: ReceivedMessage, decoded: StageReady | FinalizeJob) -> Any:
        """The message's processing span, continuing the job's trace it carries."""
        if not tracing.enabled():
            return contextlib.nullcontext()
        return tracing.span(
            f"process {message.queue}",
            kind=SpanKind.CONSUMER,
            attributes={
                **tracing.messaging_attributes("process", message.queue),
                "messaging.message.id": message.message_id,
                "messaging.message.delivery_count": message.delivery_count,
                "coremachine.job.id": decoded.job_id,
                "coremachine.job.type": decoded.job_type,
                "coremachine.message.kind": decoded.kind,
                "coremachine.stage": getattr(decoded, "stage", 0),
            },
            parent_ctx=tracing.context_of_message(message.properties),
        )

    async def _route(self, lock: MessageLock, decoded: StageReady | FinalizeJob) -> None:
        # Settled with lock.message: the lock as last renewed.
        message = lock.message
        job_type = self.registry.job_type(decoded.job_type)
        if decoded.definition and not self.registry.serves(decoded.job_type, decoded.definition):
            # Another version of this job type (or a type of another app):
            # whoever serves that definition plans it.
            parked, reason = await self.state.park_job_message(
                decoded.job_id,
                decoded.job_type,
                decoded.definition,
                message.message_id,
                message.body,
                self.orchestrator_id,
            )
            log.info(
                "message %s is for definition %s@%s: %s",
                message.message_id,
                decoded.job_type,
                decoded.definition[:12],
                reason if parked else "sent on to an orchestrator that serves it",
            )
            await self._settle(self.broker.complete([lock.message]))
            return
        if job_type is None:
            await self._dead_letter(
                lock.message,
                "UnknownJobType",
                f"no loaded app defines job type {decoded.job_type!r}",
            )
            return
        try:
            await self._process(decoded, job_type)
        except NotFound as exc:
            await self._dead_letter(lock.message, "UnknownJob", str(exc))
            return
        except InvalidArgument as exc:
            await self._dead_letter(lock.message, "Rejected", str(exc))
            return
        except Exception as exc:
            log.warning("transient failure, will retry: %s", _short(exc))
            # Growing delays: an outage of the state service must not use up
            # the message's deliveries (dead-lettered, its job wedged).
            delay = min(TRANSIENT_RETRY_DELAY * 2 ** (message.delivery_count - 1), 30.0)
            await self._settle(self.broker.abandon([lock.message], delay=delay))
            return
        await self._settle(self.broker.complete([lock.message]))

    async def _process(self, decoded: StageReady | FinalizeJob, job_type: JobType) -> None:
        # The stage whose results the step needs: the previous one to plan a
        # stage, the last one to finalize. A small stage's come with the
        # message; otherwise they are read with the job, in one call.
        finalizing = isinstance(decoded, FinalizeJob)
        needs = decoded.stage - 1 if isinstance(decoded, StageReady) else len(job_type.stages)
        results: list[PreviousResult] | None
        if decoded.context is not None:
            # The job may have been cancelled since: creating tasks or
            # completing a job that ended is refused by the state service.
            job, results = await self.planner.from_context(
                decoded.job_id, decoded.job_type, decoded.context
            )
            if finalizing and decoded.context.total_stages != needs:
                job, results = await self.planner.job_and_results(job.job_id, job.total_stages)
        elif self._reads_results_later(decoded, job_type):
            # A MatchPrevious stage reads its previous results a page at a
            # time; the default summary needs none: a million-task stage's
            # results never sit in this process at once.
            job, results = await self.state.get_job(decoded.job_id), None
            if job.status.is_terminal:
                return
        else:
            job, results = await self.planner.job_and_results(decoded.job_id, needs)
            if job.status.is_terminal:
                return  # cancelled or failed meanwhile, or a replay of a finished job
            if finalizing and job.total_stages != needs:
                job, results = await self.planner.job_and_results(job.job_id, job.total_stages)
        try:
            if isinstance(decoded, StageReady):
                created = await self.planner.plan_stage(job, job_type, decoded.stage, results)
                log.info("stage %d planned: %d tasks created", decoded.stage, created)
            else:
                result = await self.planner.finalize(job, job_type, results or [])
                if await self.state.complete_job(job.job_id, json.dumps(result).encode()):
                    self.metrics.finalized.labels(job_type.name).inc()
                log.info("job finalized")
        except PlanningError as exc:
            log.error("job failed: %s", exc)
            if await self.state.fail_job(job.job_id, str(exc)):
                self.metrics.planning_failed.labels(job_type.name).inc()

    def _reads_results_later(self, decoded: StageReady | FinalizeJob, job_type: JobType) -> bool:
        if isinstance(decoded, StageReady):
            return self.planner.reads_previous_in_pages(job_type, decoded.stage)
        return job_type.aggregate is None

    async def _dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        log.error("dead-lettering %s: %s %s", message.message_id, reason, description)
        self.metrics.dead_lettered.labels(message.queue, reason).inc()
        await self._settle(self.broker.dead_letter(message, reason, description))

    async def _settle(self, settlement) -> None:
        try:
            await settlement
        except LockLostError:
            # Redelivered later; handling is idempotent.
            log.warning("message lock lost before settlement")
        except Exception:
            # The broker is down: the lock expires and the message comes back.
            log.exception("settling a message failed; it will be redelivered")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _wait_any(stopping: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    """Until either event is set, or seconds pass."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stopping, event)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
