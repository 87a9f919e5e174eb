"""Consumes the jobs queue: "stage ready" -> plan the stage; "finalize" -> aggregate.

Settlement rules: success or a permanent job error -> complete the message;
a transient error (state unavailable) -> abandon with a delay so the broker
redelivers it (and dead-letters it after max deliveries); an undecodable body
or unknown job type -> dead-letter with a reason. The consumer never crashes
on a message.
"""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
from pydantic import ValidationError

from coremachine.services.orchestrator.planner import TERMINAL_JOB, Planner, PlanningError
from coremachine.services.orchestrator.registry import JobRegistry
from coremachine.shared.broker import Broker, LockLostError, ReceivedMessage
from coremachine.shared.logging_setup import log_context
from coremachine.shared.messages import FinalizeJob, StageReady, job_message_adapter
from coremachine.state.v1 import state_pb2, state_pb2_grpc

log = logging.getLogger(__name__)

TRANSIENT_RETRY_DELAY = 2.0


class JobsConsumer:
    def __init__(
        self,
        broker: Broker,
        queue: str,
        state: state_pb2_grpc.StateServiceStub,
        registry: JobRegistry,
        planner: Planner,
        batch_size: int = 16,
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.state = state
        self.registry = registry
        self.planner = planner
        self.batch_size = batch_size

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                messages = await self.broker.receive(self.queue, self.batch_size, max_wait=1.0)
            except Exception:
                log.exception("receiving from %s failed", self.queue)
                await asyncio.sleep(1.0)
                continue
            if messages:
                # Messages of one batch concern different jobs (or are
                # idempotent replays), so they can be handled concurrently.
                await asyncio.gather(*(self.handle(m) for m in messages))

    async def handle(self, message: ReceivedMessage) -> None:
        try:
            decoded = job_message_adapter.validate_json(message.body)
        except ValidationError as exc:
            await self._dead_letter(message, "UndecodableBody", str(exc)[:1000])
            return
        with log_context(job_id=decoded.job_id):
            job_type = self.registry.get(decoded.job_type)
            if job_type is None:
                await self._dead_letter(
                    message, "UnknownJobType", f"no job type {decoded.job_type!r} here"
                )
                return
            try:
                await self._process(decoded, job_type)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    await self._dead_letter(message, "UnknownJob", exc.details() or "")
                    return
                log.warning("transient failure, will retry: %s", exc.code().name)
                await self._settle(self.broker.abandon([message], delay=TRANSIENT_RETRY_DELAY))
                return
            except Exception:
                log.exception("unexpected failure handling %s", message.message_id)
                await self._settle(self.broker.abandon([message], delay=TRANSIENT_RETRY_DELAY))
                return
            await self._settle(self.broker.complete([message]))

    async def _process(self, decoded: StageReady | FinalizeJob, job_type) -> None:
        # The stage whose results the step needs: the previous one to plan a
        # stage, the last one to finalize. A small stage's come with the
        # message; otherwise they are read with the job, in one call.
        needs = decoded.stage - 1 if isinstance(decoded, StageReady) else len(job_type.stages)
        if decoded.context is not None:
            # The job may have been cancelled since: creating tasks or
            # completing a job that ended is refused by the state service.
            job, results = await self.planner.from_context(
                decoded.job_id, decoded.job_type, decoded.context
            )
        else:
            job, results = await self.planner.job_and_results(decoded.job_id, needs)
            if job.status in TERMINAL_JOB:
                return  # cancelled or failed meanwhile, or a replay of a finished job
        try:
            if isinstance(decoded, StageReady):
                if decoded.stage > len(job_type.stages):
                    raise PlanningError(f"job type has no stage {decoded.stage}")
                created = await self.planner.plan_stage(job, job_type, decoded.stage, results)
                log.info("stage %d planned: %d tasks created", decoded.stage, created)
            else:
                if job.total_stages != needs:  # the job type changed since submit
                    job, results = await self.planner.job_and_results(job.job_id, job.total_stages)
                result = await self.planner.finalize(job, job_type, results)
                await self.state.CompleteJob(
                    state_pb2.CompleteJobRequest(
                        job_id=job.job_id, result_json=json.dumps(result).encode()
                    )
                )
                log.info("job finalized")
        except PlanningError as exc:
            log.error("job failed: %s", exc)
            await self.state.FailJob(state_pb2.FailJobRequest(job_id=job.job_id, error=str(exc)))

    async def _dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        log.error("dead-lettering %s: %s %s", message.message_id, reason, description)
        await self._settle(self.broker.dead_letter(message, reason, description))

    async def _settle(self, settlement) -> None:
        try:
            await settlement
        except LockLostError:
            # Redelivered later; handling is idempotent.
            log.warning("message lock lost before settlement")
