"""Claim check of task payloads on the worker, so handlers only ever see real values.

A task's parameters may arrive as a claim-check reference (the orchestrator
stored them because they were large); a handler's result larger than the
threshold leaves as a reference to a blob written here.
"""

from __future__ import annotations

import json
from typing import Any

from coremachine.shared.claim_check_payloads import JsonPayloads, payload_key


class TaskPayloads(JsonPayloads):
    """Decodes payloads (fetching referenced ones) and encodes results (storing large ones)."""

    async def store_result(self, value: Any, *, job_id: str, stage: int, task_index: int) -> bytes:
        """The result as reported to the state service: its JSON, or a reference to a blob."""
        encoded = json.dumps(value).encode()
        return await self.wrap(encoded, payload_key(job_id, stage, task_index, "result"))
