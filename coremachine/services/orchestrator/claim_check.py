"""Claim check of task payloads on the orchestrator, so job types only see real values.

Planned task parameters larger than the threshold are stored as blobs and the
task carries a reference (the worker fetches it before the handler runs);
previous results a worker stored by reference are fetched (`load_many`) before
planning and aggregation see them.
"""

from __future__ import annotations

from collections.abc import Sequence

from coremachine.shared.claim_check import is_reference
from coremachine.shared.claim_check_payloads import JsonPayloads, map_bounded, payload_key


class StagePayloads(JsonPayloads):
    """Decodes previous results and encodes planned parameters (storing large ones)."""

    async def wrap_parameters(
        self, encoded: Sequence[bytes], *, job_id: str, stage: int, first_index: int = 0
    ) -> list[bytes]:
        """Each task's JSON parameters as sent to the state service, or a reference to a blob
        (encoded[k] is task first_index + k's)."""
        wrapped = list(encoded)
        # Only large payloads (or small ones that look like a reference, which
        # wrap stores too) cost a round trip; the rest pass through untouched.
        large = [i for i, e in enumerate(encoded) if len(e) > self.threshold or is_reference(e)]
        references = await map_bounded(
            lambda i: self.wrap(
                encoded[i], payload_key(job_id, stage, first_index + i, "parameters")
            ),
            large,
        )
        for i, reference in zip(large, references, strict=True):
            wrapped[i] = reference
        return wrapped
