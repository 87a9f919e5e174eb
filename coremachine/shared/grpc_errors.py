"""One mapping between CoreMachine errors and gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import psycopg

from coremachine.shared.errors import (
    Conflict,
    CoreMachineError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

_TO_CODE: dict[type[CoreMachineError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
_FROM_CODE = {code: exc for exc, code in _TO_CODE.items()}

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def map_errors(method: F) -> F:
    """Decorates a grpc.aio servicer method: domain errors become statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except CoreMachineError as exc:
            code = _TO_CODE.get(type(exc), grpc.StatusCode.UNKNOWN)
            await context.abort(code, str(exc))
        except grpc.aio.AbortError:
            raise
        except psycopg.errors.DataError as exc:
            # A value PostgreSQL cannot store (e.g. a NUL character): the
            # caller's input, not a server fault.
            detail = exc.diag.message_primary or str(exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid value: {detail}")
        except Exception:
            log.exception("unhandled error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the service log)")

    return wrapper  # type: ignore[return-value]


def raise_for(error: grpc.aio.AioRpcError) -> NoReturn:
    """Re-raises a failed call as the matching CoreMachine error."""
    exc_type = _FROM_CODE.get(error.code())
    if exc_type is not None:
        raise exc_type(error.details() or error.code().name) from error
    if error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        raise Unavailable(f"{error.code().name}: {error.details()}") from error
    raise error


def status_for(exc: CoreMachineError) -> grpc.StatusCode:
    """The gRPC status code of a CoreMachine error."""
    return _TO_CODE.get(type(exc), grpc.StatusCode.UNKNOWN)
