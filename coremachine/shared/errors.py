"""Errors that cross service boundaries, and their gRPC status codes.

Servicers raise these; `grpc_errors.map_errors` turns them into a status
with the message; clients turn statuses back with `grpc_errors.raise_for`.
"""

from __future__ import annotations


class CoreMachineError(Exception):
    """Base of the errors a caller can act on."""


class NotFound(CoreMachineError):
    """The job, task or type does not exist."""


class InvalidArgument(CoreMachineError):
    """Bad input; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(CoreMachineError):
    """The request does not fit the current state (e.g. cancel a finished job)."""


class Unavailable(CoreMachineError):
    """A dependency is down; retrying later may succeed."""


class Overloaded(CoreMachineError):
    """The service or its database is saturated: refused at once rather than queued; retry later."""


class Unauthenticated(CoreMachineError):
    """No valid credentials."""


class PermissionDenied(CoreMachineError):
    """Valid credentials without the required role."""


class Internal(CoreMachineError):
    """The other service failed in a way it did not explain (a bug, or a lost reply)."""
