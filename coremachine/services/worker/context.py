"""What a task handler receives besides its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.shared.blobstore import BlobStore
from coremachine.state.v1 import state_pb2, state_pb2_grpc


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    job_id: str
    job_type: str
    stage: int
    task_index: int
    attempt: int
    state: state_pb2_grpc.StateServiceStub
    # The worker's blob store (BLOB_STORE): handlers read and write blobs through
    # it, so the same handler runs on the local directory and on Azure Blob Storage.
    blobs: BlobStore
    payloads: TaskPayloads

    async def stage_results(self, stage: int) -> list[dict[str, Any]]:
        """Results of a stage of this job, ordered by task index (for fan-in by reference)."""
        rows = []
        async for chunk in self.state.GetStageResults(
            state_pb2.GetStageResultsRequest(job_id=self.job_id, stage=stage)
        ):
            rows.extend(chunk.results)
        # A large result was stored as a claim-check reference: fetch the value.
        values = await self.payloads.load_many([r.result_json for r in rows])
        return [
            {
                "task_index": r.task_index,
                "status": "completed" if r.result_json else "failed",
                "result": value,
            }
            for r, value in zip(rows, values, strict=True)
        ]

    async def resolve_previous_results(self, value: Any) -> list[dict[str, Any]]:
        """Inline previous results as they are; a {"$stage_results": ...} reference fetched."""
        if isinstance(value, dict) and "$stage_results" in value:
            return await self.stage_results(int(value["$stage_results"]["stage"]))
        return list(value or [])
