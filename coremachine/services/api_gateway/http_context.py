"""What the HTTP routers share: the backends, the role guard and the limits."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from coremachine.services.api_gateway.auth import Principal, Role
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.metrics import GatewayMetrics
from coremachine.services.api_gateway.params import ParameterLimits
from coremachine.shared.errors import InvalidArgument

JOB_ID_PATTERN = r"^[0-9a-f]{64}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)


@dataclass(frozen=True)
class HttpContext:
    backends: Backends
    # needs(Role.X) is the dependency a route declares to require that role.
    needs: Callable[[Role], Callable[..., Awaitable[Principal]]]
    parameter_limits: ParameterLimits
    # Set when the gateway shuts down: open event streams end at once.
    stopping: asyncio.Event
    max_list_limit: int = 1000
    events_poll_seconds: float = 10.0
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)


def check_job_id(job_id: str, field: str = "job_id") -> str:
    """Job ids are SHA-256 hex; anything else cannot exist, so it is bad input, not 404."""
    if not _JOB_ID.match(job_id):
        raise InvalidArgument(f"{field}: must be 64 lower-case hex characters", field)
    return job_id
