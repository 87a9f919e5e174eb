"""One mapping between CoreMachine errors and gRPC status codes.

Besides the domain errors, infrastructure failures get the code that tells a
caller what to do: a lost or refused database connection (PostgreSQL
restarting, a pool that cannot connect in time) is UNAVAILABLE, which
callers retry; a saturated database (too many requests waiting for a pooled
connection, or PostgreSQL out of connections) is RESOURCE_EXHAUSTED, which
is refused at once rather than queued. Neither is INTERNAL: INTERNAL means a
bug, and the gateway shows it as 502. A failed call to another service is
relayed with its code, so a dependency's UNAVAILABLE reaches the client as
UNAVAILABLE (the gateway's 503) instead of turning into INTERNAL on the way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import psycopg
import psycopg_pool

from coremachine.shared.errors import (
    Conflict,
    CoreMachineError,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
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
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
_FROM_CODE = {code: exc for exc, code in _TO_CODE.items()}

# Codes of a failed internal call that are relayed unchanged. The others
# (INTERNAL, UNKNOWN, UNIMPLEMENTED, UNAUTHENTICATED between services...) are
# this service's problem, not the caller's: INTERNAL.
_RELAYED = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}
# Infrastructure codes: logged as one warning line, not a traceback.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# PostgreSQL's class 53, "insufficient resources" (too many connections, out
# of memory or disk): the database is saturated, not down.
_PG_RESOURCES_CLASS = "53"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
S = TypeVar("S", bound=Callable[..., AsyncIterator[Any]])


def _pg_detail(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.diag is not None else None
    return f"{type(exc).__name__}: {primary or str(exc).strip() or 'no detail'}"[:500]


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a servicer answers for an exception, or None for a bug (INTERNAL)."""
    if isinstance(exc, Internal):
        # A dependency failed without saying why: not this caller's doing.
        return grpc.StatusCode.INTERNAL, str(exc)
    if isinstance(exc, CoreMachineError):
        return _TO_CODE.get(type(exc), grpc.StatusCode.UNKNOWN), str(exc)
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code == grpc.StatusCode.CANCELLED:
            code = grpc.StatusCode.UNAVAILABLE
        if code in _RELAYED:
            return code, exc.details() or code.name
        return None
    # psycopg_pool's errors subclass OperationalError: test them first.
    if isinstance(exc, psycopg_pool.TooManyRequests):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"database busy: {exc}"
    if isinstance(exc, (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)):
        return grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}"
    if isinstance(exc, psycopg.errors.DataError):
        # A value PostgreSQL cannot store (e.g. a NUL character): the
        # caller's input, not a server fault.
        detail = exc.diag.message_primary or str(exc)
        return grpc.StatusCode.INVALID_ARGUMENT, f"invalid value: {detail}"
    if isinstance(exc, psycopg.OperationalError):
        # Lost connections (AdminShutdown when PostgreSQL restarts, a server
        # that closed the connection, a refused connect), serialization
        # failures and deadlocks: all worth retrying.
        if (exc.sqlstate or "").startswith(_PG_RESOURCES_CLASS):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, f"database saturated: {_pg_detail(exc)}"
        return grpc.StatusCode.UNAVAILABLE, f"database unavailable: {_pg_detail(exc)}"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return grpc.StatusCode.UNAVAILABLE, f"dependency unavailable: {type(exc).__name__}: {exc}"
    return None


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Ends the call with exc's status (context.abort raises)."""
    status = status_of(exc)
    if status is None:
        log.error("unhandled error in %s", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the service log)")
        return
    code, message = status
    if code in _TRANSIENT and not isinstance(exc, CoreMachineError):
        log.warning("%s: %s (%s)", method, code.name, message)
    await context.abort(code, message)


def map_errors(method: F) -> F:
    """Decorates a grpc.aio servicer method: errors become statuses (see the module docstring)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def map_stream_errors(method: S) -> S:
    """map_errors for server-streaming methods."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method.__name__)

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
