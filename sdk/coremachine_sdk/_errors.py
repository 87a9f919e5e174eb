"""The SDK's exceptions, and the one mapping from gRPC status codes to them."""

from __future__ import annotations

import re

import grpc

# Servers may name the offending field in this trailing metadata key; when they
# do not, the field is read from a "field: message" prefix (the orchestrator's
# format for parameter validation errors).
FIELD_METADATA_KEY = "coremachine-field"
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class CoreMachineError(Exception):
    """Base of every error the SDK raises; `code` is the gRPC status name, if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class JobNotFound(CoreMachineError):
    """The job (or another named thing) does not exist."""


class InvalidParameters(CoreMachineError):
    """The request was rejected as invalid; `field` names the offending field when known."""

    def __init__(self, message: str, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code)
        self.field = field


class Conflict(CoreMachineError):
    """The request does not fit the job's current state (e.g. cancel a finished job)."""


class Unauthorized(CoreMachineError):
    """No valid API key was presented."""


class PermissionDenied(CoreMachineError):
    """The API key is valid but lacks the role the call needs."""


class Unavailable(CoreMachineError):
    """The server could not be reached or is not ready; retrying later may succeed."""


class Timeout(CoreMachineError, TimeoutError):
    """A deadline passed: the call's, or the one given to `wait`."""


_BY_CODE: dict[grpc.StatusCode, type[CoreMachineError]] = {
    grpc.StatusCode.NOT_FOUND: JobNotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidParameters,
    grpc.StatusCode.OUT_OF_RANGE: InvalidParameters,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.UNAUTHENTICATED: Unauthorized,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    # The server refused the call because it is saturated: retry later.
    grpc.StatusCode.RESOURCE_EXHAUSTED: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
}


def _field_of(error: grpc.RpcError, message: str) -> str | None:
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == FIELD_METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    match = _FIELD_PREFIX.match(message)
    return match.group(1) if match else None


def error_from_rpc(error: grpc.RpcError) -> CoreMachineError:
    """The SDK exception for a failed gRPC call (sync or asyncio)."""
    code: grpc.StatusCode | None = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    name = code.name if code is not None else None
    message = details or name or str(error)
    exc_type = _BY_CODE.get(code, CoreMachineError) if code is not None else CoreMachineError
    if exc_type is InvalidParameters:
        return InvalidParameters(message, name, _field_of(error, message))
    return exc_type(message, name)
